"""The learning-rate explorer: gradient descent on 2D surfaces with the real PyTorch optimizers
(:mod:`lrkit.explore.descent`), served as a local web page by :mod:`lrkit.explore.app`."""

from lrkit.explore.descent import (
    OPTIMIZERS,
    Descent,
    descend,
    descend_many,
    optimizer_limit,
    range_test,
)

__all__ = ["OPTIMIZERS", "Descent", "descend", "descend_many", "optimizer_limit", "range_test"]
