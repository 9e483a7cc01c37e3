"""Kinds of experiment: what the shared trainer needs to know about one (model, data, loss, metrics, figures)."""

from .base import Task, build_task, to_device
from .classification import ClassificationTask

__all__ = ["Task", "build_task", "to_device", "ClassificationTask"]
