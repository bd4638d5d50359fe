"""Data for the search: the dataset protocol, datasets held in memory, and the registered datasets, one file each
(digits, synthetic, CIFAR-10, ImageNet, Fashion-MNIST and MNIST); importing this package registers them. Nothing
is downloaded."""

from . import cifar10, digits, idx, imagenet, synthetic
from .bundle import DataBundle, Split
from .protocol import SPLITS, Dataset, dataset_names, load_data

__all__ = ["SPLITS", "DataBundle", "Dataset", "Split", "cifar10", "dataset_names", "digits", "idx", "imagenet",
           "load_data", "synthetic"]
