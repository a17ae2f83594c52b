"""Benchmarks: measured claims, each writing its latest results to benchmarks/results/."""
