"""The ``lrkit`` command line: one module per command, loaded on first use."""
