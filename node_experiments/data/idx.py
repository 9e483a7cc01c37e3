"""Checks of the IDX files that MNIST-like data sets come in (LeCun's format, as ``torchvision.datasets.MNIST`` reads it).

An IDX file starts with a magic number, 0x0000 then a type byte (0x08: unsigned bytes) and the number of
dimensions, followed by each dimension's size as a big-endian int32, then the data. torchvision asserts on a bad
magic number without saying why or which file, does not check that a file is complete, and passes label bytes out
of range on to the loss, which fails deep in the training loop. ``check_idx_split`` checks what torchvision will
read, and raises ``DataFormatError`` with a sentence naming the file.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from ..errors import DataFormatError

UNSIGNED_BYTE = 0x08
# torchvision's file names for MNIST, FashionMNIST and KMNIST: (images, labels) per split.
SPLIT_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def check_idx_split(folder: Path, *, train: bool, num_classes: int | None) -> None:
    """Check the images and labels of one split in ``folder`` (files that are not there are left to torchvision):
    headers, lengths, equal counts, and labels below ``num_classes`` (when given)."""
    image_file, label_file = (folder / name for name in SPLIT_FILES[train])
    counts = {}
    if image_file.is_file():
        counts[image_file] = read_header(image_file, dimensions=3)[0]
    if label_file.is_file():
        counts[label_file] = read_header(label_file, dimensions=1)[0]
        if num_classes is not None:
            check_labels(label_file, num_classes)
    if len(counts) == 2 and len(set(counts.values())) == 2:
        raise DataFormatError(
            f"{image_file} holds {counts[image_file]:,} images but {label_file} holds {counts[label_file]:,} labels: "
            f"the files do not belong together. {_fix(folder)}"
        )


def read_header(path: Path, dimensions: int) -> list[int]:
    """The sizes of the dimensions of the IDX file ``path`` of unsigned bytes, after checking its header and length."""
    header_bytes = 4 * (dimensions + 1)
    with open(path, "rb") as file:
        header = file.read(header_bytes)
    expected_magic = (UNSIGNED_BYTE << 8) | dimensions
    if len(header) < 4 or struct.unpack(">i", header[:4])[0] != expected_magic:
        found = f"0x{header[:4].hex()}" if len(header) >= 4 else f"only {len(header)} bytes"
        raise DataFormatError(
            f"{path} is not an IDX file of unsigned bytes with {dimensions} dimension(s): its header starts with "
            f"{found}, where 0x{expected_magic:08x} belongs. The file is damaged or of another format. {_fix(path.parent)}"
        )
    if len(header) < header_bytes:
        raise DataFormatError(f"{path} ends inside its header ({len(header)} bytes). {_fix(path.parent)}")
    sizes = list(struct.unpack(f">{dimensions}i", header[4:]))
    expected_length = header_bytes + math.prod(sizes)
    length = path.stat().st_size
    if min(sizes) < 0 or length != expected_length:
        raise DataFormatError(
            f"{path} is {length:,} bytes, but its header describes {' x '.join(map(str, sizes))} bytes of data "
            f"after a {header_bytes}-byte header ({expected_length:,} bytes in all): the file is cut short or "
            f"damaged. {_fix(path.parent)}"
        )
    return sizes


def check_labels(path: Path, num_classes: int) -> None:
    """Every label byte of ``path`` (a checked 1-D IDX file) must be below ``num_classes``."""
    labels = np.frombuffer(path.read_bytes()[8:], dtype=np.uint8)
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        more = f" (and {bad.size - 1:,} more)" if bad.size > 1 else ""
        raise DataFormatError(
            f"{path}: label {labels[bad[0]]} at position {bad[0]:,}{more} is out of range "
            f"for data.num_classes={num_classes} (labels are 0 to {num_classes - 1}): the file is damaged, or "
            f"data.num_classes does not fit this data set. {_fix(path.parent)}"
        )


def _fix(folder: Path) -> str:
    return (
        f"Delete {folder} and download the data again (data.download=true), or point data.root at a good copy."
    )
