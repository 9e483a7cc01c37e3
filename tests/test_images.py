"""MNIST-like images decoded once into tensors, and the batch random crop against torchvision's RandomCrop."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chi2_contingency, chisquare
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.transforms import functional as TF

from conftest import compose, mnist_data_config
from node_experiments.data.augment import crop_padded, random_offsets
from node_experiments.data.images import DeviceBatches, ImageTensors, image_classification_loaders, load_image_dataset
from node_experiments.errors import ConfigError
from node_experiments.tasks.classification import ClassificationTask

PADDING = 4
SIDE = 2 * PADDING + 1  # offsets per axis: 0 .. 8


def test_crops_match_torchvision_pixel_for_pixel_at_every_offset() -> None:
    images = torch.randint(0, 256, (SIDE * SIDE, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    offsets = torch.cartesian_prod(torch.arange(SIDE), torch.arange(SIDE))  # every (top, left)
    crops = crop_padded(images, offsets, PADDING)
    for image, (top, left), crop in zip(images, offsets.tolist(), crops):
        pil = Image.fromarray(image[0].numpy(), mode="L")
        expected = TF.to_tensor(TF.crop(TF.pad(pil, PADDING), top, left, 28, 28))
        assert torch.equal(crop.float().div(255), expected), (top, left)


def test_the_centre_offset_gives_the_image_back_and_others_shift_it() -> None:
    images = torch.rand(3, 2, 5, 7)
    assert torch.equal(crop_padded(images, torch.full((3, 2), 2), 2), images)
    shifted = crop_padded(images, torch.tensor([[3, 2]] * 3), 2)  # one row down: the image moves up
    assert torch.equal(shifted[:, :, :-1], images[:, :, 1:]) and not shifted[:, :, -1].any()


def torchvision_offsets(count: int) -> np.ndarray:
    """The (top, left) offsets that ``RandomCrop(28, padding=4)`` picks for ``count`` images, read back from crops
    of an image whose two channels hold each pixel's row and column (+1)."""
    rows, columns = torch.meshgrid(torch.arange(28.0) + 1, torch.arange(28.0) + 1, indexing="ij")
    coded = torch.stack([rows, columns])
    crop = transforms.RandomCrop(28, padding=PADDING)
    torch.manual_seed(1)
    # out[4, 4] = padded[top + 4, left + 4] = image[top, left]
    return np.array([(crop(coded)[:, PADDING, PADDING] - 1).tolist() for _ in range(count)], dtype=int)


def pipeline_offsets(count: int) -> np.ndarray:
    """The offsets the training batches were cropped at, read back the same way from the batches themselves."""
    rows, columns = torch.meshgrid(torch.arange(28) + 1, torch.arange(28) + 1, indexing="ij")
    coded = torch.stack([rows, columns]).to(torch.uint8).expand(count, 2, 28, 28)
    loader = DataLoader(ImageTensors(coded, torch.zeros(count, dtype=torch.long), PADDING), batch_size=128,
                        collate_fn=lambda batch: batch)  # fmt: skip
    torch.manual_seed(2)
    images = torch.cat([images for images, _ in DeviceBatches(loader, torch.device("cpu"), PADDING)])
    return (images[:, :, PADDING, PADDING] * 255).round().long().numpy() - 1


def histogram(offsets: np.ndarray) -> np.ndarray:
    return np.bincount(offsets[:, 0] * SIDE + offsets[:, 1], minlength=SIDE * SIDE)


def test_batch_crop_offsets_have_torchvisions_distribution() -> None:
    count = 100 * SIDE * SIDE  # 100 expected per (top, left) bin
    ours, theirs = histogram(pipeline_offsets(count)), histogram(torchvision_offsets(count))
    assert ours.size == theirs.size == SIDE * SIDE and ours.sum() == theirs.sum() == count
    assert chi2_contingency(np.stack([ours, theirs])).pvalue > 1e-3  # the same distribution as torchvision's
    assert chisquare(ours).pvalue > 1e-3  # uniform over the 81 offsets
    # The test can tell: offsets that miss the last row and column (0 .. 2p - 1) are rejected.
    generator = torch.Generator().manual_seed(3)
    short = histogram(torch.randint(0, 2 * PADDING, (count, 2), generator=generator).numpy())
    assert chi2_contingency(np.stack([short, theirs])).pvalue < 1e-9


def test_offsets_come_from_torchs_generator() -> None:
    """The training process's torch generator is saved in checkpoints: the same state, the same crops."""
    torch.manual_seed(5)
    first = random_offsets(64, PADDING)
    torch.manual_seed(5)
    assert torch.equal(random_offsets(64, PADDING), first)
    assert not torch.equal(random_offsets(64, PADDING), first)


def test_the_batches_are_those_of_the_per_image_torchvision_pipeline(tiny_data_root: Path) -> None:
    """Not only the same distribution: on the CPU torch draws a batch's offsets in the order torchvision draws them
    image by image, so from the same generator states the batches are the same, pixel for pixel."""
    data = mnist_data_config(tiny_data_root, f"data.random_crop_padding={PADDING}", "data.batch_size=16")
    per_image = load_image_dataset("MNIST", tiny_data_root, train=True, download=False,
                                   transform=transforms.Compose([transforms.RandomCrop(28, padding=PADDING),
                                                                 TF.to_tensor]))
    torch.manual_seed(7)
    expected = list(DataLoader(per_image, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(7)
    batches = list(image_classification_loaders(data, torch.Generator().manual_seed(0))[0])
    assert len(batches) == len(expected) == 4
    for (images, labels), (expected_images, expected_labels) in zip(batches, expected):
        assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)


def test_unaugmented_batches_equal_torchvisions_to_tensor(tiny_data_root: Path) -> None:
    data = mnist_data_config(tiny_data_root, "data.random_crop_padding=0", "data.batch_size=16")
    train_batches, test_batches = image_classification_loaders(data, torch.Generator().manual_seed(0))
    reference = load_image_dataset("MNIST", tiny_data_root, train=False, download=False, transform=TF.to_tensor)
    expected = torch.stack([reference[i][0] for i in range(len(reference))])
    images, labels = next(iter(test_batches))
    assert torch.equal(images, expected) and images.dtype == torch.float32
    assert torch.equal(labels, torch.as_tensor([reference[i][1] for i in range(len(reference))]))
    assert len(train_batches) == 4 and sum(len(labels) for _, labels in train_batches) == 64


def test_the_training_loader_shuffles_with_the_given_generator(tiny_data_root: Path) -> None:
    data = mnist_data_config(tiny_data_root, "data.random_crop_padding=0")
    first = [labels for _, labels in image_classification_loaders(data, torch.Generator().manual_seed(0))[0]]
    again = [labels for _, labels in image_classification_loaders(data, torch.Generator().manual_seed(0))[0]]
    other = [labels for _, labels in image_classification_loaders(data, torch.Generator().manual_seed(1))[0]]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize(
    ("override", "phrase"),
    [("data.image_size=32", "image_size=32 say (1, 32, 32). Set them to the data set's, e.g. channels=1 image_size=28"),
     ("data.train_subset=65", "train_subset=65 is more than the 64 images there are: give at most 64, e.g. "
      "train_subset=64"),
     ("data.test_subset=33", "test_subset=33 is more than the 32")],
)  # fmt: skip
def test_settings_that_do_not_fit_the_data_are_value_errors_naming_the_argument(
    tiny_data_root: Path, override: str, phrase: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(phrase)) as raised:
        image_classification_loaders(mnist_data_config(tiny_data_root, override), torch.Generator())
    assert not isinstance(raised.value, ConfigError) and "data." not in str(raised.value)


@pytest.mark.parametrize(
    ("override", "phrase"),
    [("data.image_size=32", "but data.channels=1 and data.image_size=32 say (1, 32, 32). Set them to the data set's, "
      "e.g. data.channels=1 data.image_size=28."),
     ("data.train_subset=65", "data.train_subset=65 is more than the 64 images there are: give at most 64, e.g. "
      "data.train_subset=64, or data.train_subset=null for all of them.")],
)  # fmt: skip
def test_the_task_names_the_config_key_of_a_setting_that_does_not_fit(
    tiny_data_root: Path, override: str, phrase: str
) -> None:
    cfg = compose("mnist_mlp", [f"data.root={tiny_data_root}", "data.download=false", override])
    with pytest.raises(ConfigError, match=re.escape(phrase)):
        ClassificationTask(cfg, torch.device("cpu")).dataloaders(torch.Generator())


def test_an_unknown_dataset_is_a_value_error_naming_the_argument(tiny_data_root: Path) -> None:
    with pytest.raises(ValueError, match=r"dataset='MNST' is not a torchvision\.datasets class: use one with the "
                       r"MNIST layout, e\.g\. dataset=MNIST"):  # fmt: skip
        load_image_dataset("MNST", tiny_data_root, train=True, download=False)
