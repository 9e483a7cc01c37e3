"""The random crop of the Table 1 recipe (``RandomCrop(28, padding=4)``), applied to a whole batch at once.

torchvision's ``RandomCrop(size, padding=p)`` zero-pads one image by ``p`` on every side and cuts out an image of
the original size whose top-left corner is drawn uniformly, row and column independently, from ``0 .. 2p``. Here
the offsets of a whole batch are drawn in one call (``random_offsets``) and the crops are cut as tensor operations
on whatever device the images are on (``crop_padded``): one padding and one gather for the batch instead of a PIL
round trip per image. The offsets follow the same distribution as torchvision's (``tests/test_images.py`` compares
the two), and the pixels of a crop at given offsets are torchvision's exactly. On the CPU torch even draws a
batch's offsets in the order torchvision draws them image by image, so from the same generator state the batches
are the very ones the per-image pipeline gave.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_offsets(count: int, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(count, 2)`` int64 crop offsets (top, left), each uniform on ``0 .. 2 * padding``, drawn from
    ``generator`` (torch's default generator when None, as torchvision's ``RandomCrop`` draws)."""
    return torch.randint(0, 2 * padding + 1, (count, 2), generator=generator)


def crop_padded(images: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop each image of ``images`` ``(B, C, H, W)``, zero-padded by ``padding``, back to ``H x W`` at ``offsets``.

    ``offsets`` ``(B, 2)`` holds each crop's top row and left column in the padded image (``0 .. 2 * padding``);
    offsets ``(padding, padding)`` give the image back unchanged. Works for any dtype (uint8 images too) and on
    any device; ``offsets`` is moved to the images' device.
    """
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    padded_width = width + 2 * padding
    offsets = offsets.to(images.device, non_blocking=True)
    rows = offsets[:, :1] + torch.arange(height, device=images.device)  # (B, H)
    columns = offsets[:, 1:] + torch.arange(width, device=images.device)  # (B, W)
    flat_index = (rows[:, :, None] * padded_width + columns[:, None, :]).view(batch, 1, height * width)
    crops = padded.flatten(2).gather(2, flat_index.expand(batch, channels, height * width))
    return crops.view(batch, channels, height, width)
