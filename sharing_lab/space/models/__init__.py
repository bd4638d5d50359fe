"""The registered models, one file per model family; importing this package registers them."""

from . import channel_bench_macro, mobilenetv2, resnet_cifar, resnet_imagenet

__all__ = ["channel_bench_macro", "mobilenetv2", "resnet_cifar", "resnet_imagenet"]
