"""The shared trainer (one loop for every experiment), checkpoints, meters and run logging."""

from .trainer import resolve_device, seed_everything, train

__all__ = ["train", "resolve_device", "seed_everything"]
