"""The registered models, one file per model family; importing this package registers them."""

from . import mobilenetv2, resnet_cifar, resnet_imagenet

__all__ = ["mobilenetv2", "resnet_cifar", "resnet_imagenet"]
