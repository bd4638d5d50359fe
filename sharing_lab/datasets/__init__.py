"""The registered datasets, one file per dataset; importing this package registers them."""

from . import cifar10, digits, imagenet, synthetic
from .protocol import SPLITS, Dataset

__all__ = ["SPLITS", "Dataset", "cifar10", "digits", "imagenet", "synthetic"]
