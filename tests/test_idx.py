"""A damaged IDX file (MNIST's format) is a sentence naming the file: a bad magic number, a file cut short, labels
out of range, images and labels that do not belong together."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from conftest import write_tiny_mnist
from node_experiments.data import load_image_dataset
from node_experiments.errors import DataFormatError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_tiny_mnist(tmp_path / "data")


def raw(root: Path, name: str) -> Path:
    return root / "MNIST" / "raw" / name


def load(root: Path, train: bool = True) -> None:
    load_image_dataset("MNIST", root, train=train, download=False, num_classes=10)


def test_a_bad_magic_number_names_the_file(root: Path) -> None:
    images = raw(root, "train-images-idx3-ubyte")
    images.write_bytes(struct.pack(">i", 0x0D03) + images.read_bytes()[4:])
    with pytest.raises(DataFormatError, match=rf"{images} is not an IDX file .*starts with 0x00000d03, where 0x00000803"):
        load(root)


def test_a_file_cut_short_names_the_file(root: Path) -> None:
    images = raw(root, "t10k-images-idx3-ubyte")
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataFormatError, match=rf"{images} is .* bytes, but its header describes 32 x 28 x 28"):
        load(root, train=False)


def test_a_label_out_of_range_names_the_file_and_position(root: Path) -> None:
    labels = raw(root, "train-labels-idx1-ubyte")
    content = bytearray(labels.read_bytes())
    content[8 + 5] = 12
    labels.write_bytes(bytes(content))
    with pytest.raises(DataFormatError, match=rf"{labels}: label 12 at position 5 is out of range for data.num_classes=10"):
        load(root)


def test_images_and_labels_of_different_counts(root: Path, tmp_path: Path) -> None:
    other = write_tiny_mnist(tmp_path / "other", train=48)
    shutil.copy(raw(other, "train-labels-idx1-ubyte"), raw(root, "train-labels-idx1-ubyte"))
    with pytest.raises(DataFormatError, match="holds 64 images but .* holds 48 labels"):
        load(root)

