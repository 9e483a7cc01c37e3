"""MNIST-like image data sets (MNIST, Fashion-MNIST) through ``torchvision.datasets``, as data loaders.

Preprocessing follows the authors' reproduction recipe for the paper's Table 1: training images are randomly
cropped back to their size after zero padding (``RandomCrop(28, padding=4)``) and no normalisation is applied.
Each split is decoded once into a uint8 tensor; batches are copied to the model's device as uint8 and cropped
and converted to floats there, a whole batch at a time (``augment.py``), instead of image by image through PIL.
A missing data set (download off) or a failed download is a ``DataNotFoundError`` naming the folder and the two
fixes, not a torchvision stack trace; a damaged IDX file (a bad header, cut short, labels out of range) is a
``DataFormatError`` naming the file (``node_experiments.data.idx``). A setting that does not fit the data is a
plain ``ValueError`` naming the argument as ``name=value``, where the names are the ``data`` group's keys; the
validation boundary (``node_experiments.validation.config_arguments``) turns it into the config error naming
``data.<name>``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets

from ..errors import DataNotFoundError
from .augment import crop_padded, random_offsets
from .idx import check_idx_split


def image_dataset_class(dataset: str) -> type:
    """The ``torchvision.datasets`` class named ``dataset``; a ``ValueError`` naming the argument when there is none."""
    found = getattr(datasets, dataset, None)
    if not isinstance(found, type):
        raise ValueError(f"dataset={dataset!r} is not a torchvision.datasets class: use one with the MNIST layout, "
                         "e.g. dataset=MNIST or dataset=FashionMNIST.")  # fmt: skip
    return found


def load_image_dataset(
    dataset: str,
    root: str | Path,
    *,
    train: bool,
    download: bool,
    transform: Any = None,
    num_classes: int | None = None,
) -> Dataset:
    """Return ``torchvision.datasets.<dataset>`` (train or test split) from ``root``, downloading it if allowed.

    The split's IDX files are checked first (and again after a failed read, in case it downloaded them), labels
    against ``num_classes`` when it is given.
    """
    name, dataset_class = dataset, image_dataset_class(dataset)
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


def load_image_tensors(
    dataset: str, root: str | Path, *, train: bool, download: bool, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A split of an MNIST-layout data set decoded once: uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``.

    torchvision's MNIST classes decode the IDX files into one tensor when they are built (``dataset.data``); the
    images are taken from there instead of through PIL one at a time.
    """
    loaded = load_image_dataset(dataset, root, train=train, download=download, num_classes=num_classes)
    images, labels = getattr(loaded, "data", None), getattr(loaded, "targets", None)
    images = None if images is None else torch.as_tensor(images)
    if images is None or labels is None or images.dtype != torch.uint8:
        raise ValueError(
            f"dataset={dataset!r} does not hold its images as one array of bytes (.data, uint8, and .targets): use "
            "a data set with the MNIST layout, e.g. dataset=MNIST or dataset=FashionMNIST."
        )
    if images.dim() == 3:  # (N, H, W): one channel
        images = images.unsqueeze(1)
    return images.contiguous(), torch.as_tensor(labels, dtype=torch.long)


def _check_shape(images: torch.Tensor, data: Mapping[str, Any]) -> None:
    """The decoded images must have the channels and size that the ``data`` group promises the model."""
    expected = (data["channels"], data["image_size"], data["image_size"])
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"dataset={data['dataset']!r} holds images shaped {tuple(images.shape[1:])} (channels, height, width), "
            f"but channels={data['channels']} and image_size={data['image_size']} say {expected}. Set them to the "
            f"data set's, e.g. channels={images.shape[1]} image_size={images.shape[-1]}."
        )


def _first(count: int | None, available: int, name: str) -> slice:
    """The first ``count`` of ``available`` examples (all of them when ``count`` is None); more than there are is
    an error, not a silent cap (the one check of the setting ``name`` that needs the data)."""
    if count is not None and count > available:
        raise ValueError(
            f"{name}={count} is more than the {available:,} images there are: give at most {available}, e.g. "
            f"{name}={available}, or {name}=null for all of them."
        )
    return slice(count)


def _whole_batch(batch: Any) -> Any:
    """The loader's collate function: ``ImageTensors.__getitems__`` already returns a batch."""
    return batch


class ImageTensors(Dataset):
    """Decoded images (uint8, ``(N, C, H, W)``) and their labels, fetched a batch at a time.

    ``DataLoader`` calls ``__getitems__`` with a batch's indices; it returns ``(images, labels, offsets)``: the
    offsets of the random crop (``augment.random_offsets``) when ``crop_padding`` is positive, else None. They are
    drawn from torch's default generator, as torchvision's ``RandomCrop`` draws: in the training process that
    generator is saved in every checkpoint; a worker process's is seeded from the loader's generator. The crop
    itself is cut later, on the model's device (``DeviceBatches``).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, crop_padding: int = 0) -> None:
        self.images, self.labels, self.crop_padding = images, labels, crop_padding

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        images, labels, offsets = self.__getitems__([index])
        return images[0], labels[0], None if offsets is None else offsets[0]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        index = torch.as_tensor(indices, dtype=torch.long)
        offsets = random_offsets(len(indices), self.crop_padding) if self.crop_padding else None
        return self.images[index], self.labels[index], offsets


class DeviceBatches:
    """The batches of a loader over ``ImageTensors``, ready for the model on ``device``: the uint8 images are
    copied there (non-blocking, from pinned memory on CUDA), cropped at the batch's offsets, and converted to
    floats in [0, 1] exactly as ``ToTensor`` converts them. Yields ``(images, labels)``."""

    def __init__(self, loader: DataLoader, device: torch.device, crop_padding: int) -> None:
        self.loader, self.device, self.crop_padding = loader, device, crop_padding

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels, offsets in self.loader:
            images = images.to(self.device, non_blocking=True)
            if offsets is not None:
                images = crop_padded(images, offsets, self.crop_padding)
            yield images.to(torch.get_default_dtype()).div_(255), labels.to(self.device, non_blocking=True)


def _worker_context(num_workers: int) -> multiprocessing.context.BaseContext | None:
    """Start loader workers with the platform's own method, not with whatever the parent process installed.

    Inside a sweep job of the joblib launcher the default context is loky's, whose processes a DataLoader
    cannot start ("'Process' object has no attribute 'env'"); asking for the platform's method by name avoids it.
    """
    if num_workers == 0:
        return None
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def image_classification_loaders(
    data: Mapping[str, Any], generator: torch.Generator, device: torch.device = torch.device("cpu")
) -> tuple[DeviceBatches, DeviceBatches]:
    """The training and test batches described by a ``data`` config group (see configs/data/mnist.yaml), on
    ``device``.

    Each split is decoded once into a uint8 tensor; training batches are cropped on ``device``
    (``data.random_crop_padding``). ``generator`` drives the training loader's shuffling, so that saving and
    restoring its state resumes a run with the same data order.
    """
    padding = data["random_crop_padding"]  # checked with the rest of the config (node_experiments.validation)

    def split(train: bool, count: int | None, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = load_image_tensors(
            data["dataset"], data["root"], train=train, download=data["download"], num_classes=data["num_classes"]
        )
        _check_shape(images, data)
        keep = _first(count, len(labels), name)
        return images[keep], labels[keep]

    train_set = ImageTensors(*split(True, data["train_subset"], "train_subset"), crop_padding=padding)
    test_set = ImageTensors(*split(False, data["test_subset"], "test_subset"))
    # Workers are restarted each epoch and seeded from `generator`, so a resumed run augments identically.
    common = dict(
        collate_fn=_whole_batch,
        num_workers=data["num_workers"],
        multiprocessing_context=_worker_context(data["num_workers"]),
        pin_memory=device.type == "cuda",
    )
    train_loader = DataLoader(
        train_set, batch_size=data["batch_size"], shuffle=True, drop_last=False, generator=generator, **common
    )
    test_loader = DataLoader(test_set, batch_size=data["test_batch_size"], shuffle=False, **common)
    return DeviceBatches(train_loader, device, padding), DeviceBatches(test_loader, device, 0)
