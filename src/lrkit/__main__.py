"""``python -m lrkit`` runs the command line."""

from lrkit.cli.app import run

run()
