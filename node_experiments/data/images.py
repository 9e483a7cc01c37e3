"""MNIST-like image data sets (MNIST, Fashion-MNIST) through ``torchvision.datasets``, as data loaders.

Preprocessing follows the authors' reproduction recipe for the paper's Table 1: training images are randomly
cropped back to their size after zero padding (``RandomCrop(28, padding=4)``) and no normalisation is applied.
A missing data set (download off) or a failed download is a ``DataNotFoundError`` naming the folder and the two
fixes, not a torchvision stack trace; a damaged IDX file (a bad header, cut short, labels out of range) is a
``DataFormatError`` naming the file (``node_experiments.data.idx``).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from ..errors import ConfigError, DataNotFoundError
from .idx import check_idx_split


def load_image_dataset(
    name: str, root: str | Path, *, train: bool, download: bool, transform: Any = None, num_classes: int | None = None
) -> Dataset:
    """Return ``torchvision.datasets.<name>`` (train or test split) from ``root``, downloading it if allowed.

    The split's IDX files are checked first (and again after a failed read, in case it downloaded them), labels
    against ``num_classes`` when it is given.
    """
    dataset_class = getattr(datasets, name, None)
    if dataset_class is None:
        raise ValueError(f"{name!r} is not a torchvision.datasets class; use one with the MNIST layout, e.g. MNIST.")
    root = Path(root).expanduser().resolve()
    folder = root / name / "raw"
    copy = f"or point data.root at a folder that holds a copy (with {name}/raw/*-ubyte inside): data.root=/path/to/data."
    download_fix = (
        "Either run again with a working network connection (data.download=true), "
        if download
        else "Either turn the download on (data.download=true, needs a network connection), "
    )
    if not download and not folder.is_dir():
        raise DataNotFoundError(
            f"{name} was not found: {folder} does not exist and data.download=false. {download_fix}{copy}"
        )
    check_idx_split(folder, train=train, num_classes=num_classes)
    try:
        return dataset_class(str(root), train=train, download=download, transform=transform)
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError... for missing or partial data
        check_idx_split(folder, train=train, num_classes=num_classes)
        what = "could not be downloaded into" if download else "could not be read from"
        reason = " ".join(f"{type(error).__name__}: {error}".split())  # torchvision's message spans lines
        raise DataNotFoundError(f"{name} {what} {folder} ({reason}). {download_fix}{copy}") from error


def _first(dataset: Dataset, count: int | None, key: str) -> Dataset:
    """The first ``count`` examples of ``dataset`` (all of them when ``count`` is None); more than there are is an
    error, not a silent cap (the one check of ``key`` that needs the data)."""
    if count is None:
        return dataset
    if count > len(dataset):
        raise ConfigError(
            f"{key}={count} is more than the {len(dataset):,} images there are: give at most {len(dataset)}, or "
            f"{key}=null for all of them."
        )
    return Subset(dataset, range(count))


def _worker_context(num_workers: int) -> multiprocessing.context.BaseContext | None:
    """Start loader workers with the platform's own method, not with whatever the parent process installed.

    Inside a sweep job of the joblib launcher the default context is loky's, whose processes a DataLoader
    cannot start ("'Process' object has no attribute 'env'"); asking for the platform's method by name avoids it.
    """
    if num_workers == 0:
        return None
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def image_classification_loaders(data: Mapping[str, Any], generator: torch.Generator) -> tuple[DataLoader, DataLoader]:
    """The training and test loaders described by a ``data`` config group (see configs/data/mnist.yaml).

    ``generator`` drives the training loader's shuffling, so that saving and restoring its state resumes a run
    with the same data order.
    """
    augment = []
    if data["random_crop_padding"]:
        augment.append(transforms.RandomCrop(data["image_size"], padding=data["random_crop_padding"]))
    train_transform = transforms.Compose([*augment, transforms.ToTensor()])
    test_transform = transforms.ToTensor()

    def load(train: bool, transform: Any) -> Dataset:
        return load_image_dataset(
            data["dataset"], data["root"], train=train, download=data["download"], transform=transform,
            num_classes=data["num_classes"],
        )

    train_set = _first(load(True, train_transform), data["train_subset"], "data.train_subset")
    test_set = _first(load(False, test_transform), data["test_subset"], "data.test_subset")
    # Workers are restarted each epoch and seeded from `generator`, so a resumed run augments identically.
    workers = dict(num_workers=data["num_workers"], multiprocessing_context=_worker_context(data["num_workers"]))
    train_loader = DataLoader(
        train_set, batch_size=data["batch_size"], shuffle=True, drop_last=False, generator=generator, **workers
    )
    test_loader = DataLoader(test_set, batch_size=data["test_batch_size"], shuffle=False, **workers)
    return train_loader, test_loader
