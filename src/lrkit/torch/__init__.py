"""Runners that drive real PyTorch training: the range test, the guard, param groups, the scheduler adapter."""
