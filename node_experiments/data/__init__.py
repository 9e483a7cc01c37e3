"""Data sets of the experiments, loaded through torchvision.datasets (image classification)."""

from .images import image_classification_loaders, load_image_dataset

__all__ = ["image_classification_loaders", "load_image_dataset"]
