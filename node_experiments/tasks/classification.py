"""Image classification (paper section 3, Table 1): cross-entropy loss; accuracy and error as metrics."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.images import DeviceBatches, image_classification_loaders
from ..validation import config_arguments
from .base import Task, add_regularization, to_device


class ClassificationTask(Task):
    """Classify images of a torchvision data set (``data`` group) with the ``model`` group's network."""

    best_metric = ("error", "min")  # Table 1's test error

    def dataloaders(self, generator: torch.Generator) -> tuple[DeviceBatches, DeviceBatches]:
        with config_arguments("data", self.cfg.data):
            return image_classification_loaders(self.cfg.data, generator, self.device)

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, labels = batch
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        return add_regularization(model, loss, {"accuracy": accuracy})

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DeviceBatches) -> dict[str, float]:
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        count = 0
        for batch in loader:
            images, labels = to_device(batch, self.device)
            logits = model(images)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(dim=1) == labels).sum()
            count += labels.numel()
        accuracy = correct.item() / max(count, 1)
        return {"loss": loss_sum.item() / max(count, 1), "accuracy": accuracy, "error": 1.0 - accuracy}
