"""What the trainer measures besides the task's metrics: running means, per-step sums kept on the device, and the
memory a batch needs.

Memory is measured, not assumed (paper Table 1 compares O(1) and O(L) memory):

- on CUDA, ``torch.cuda.max_memory_allocated`` over the epoch;
- on any device, the bytes the forward pass saves for backward, counted with
  ``torch.autograd.graph.saved_tensors_hooks``. Each storage is counted once per batch however many
  operations save it, and parameters are left out (they are in memory whatever the method), so the figure is the
  activation memory that backpropagation needs: it grows with the depth of a ResNet and with the number of
  solver steps of an RK-Net, and stays flat for the adjoint ODE-Net.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

import torch


class Means:
    """Running means of named scalars (one value per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def update(self, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.add(name, value)

    def add(self, name: str, total: float, count: int = 1) -> None:
        """Add ``count`` steps whose values sum to ``total``."""
        self.sums[name] += total
        self.counts[name] += count

    def merge(self, other: "Means") -> None:
        """Add every step of ``other``."""
        for name, total in other.sums.items():
            self.add(name, total, other.counts[name])

    def means(self) -> dict[str, float]:
        return {name: self.sums[name] / self.counts[name] for name in self.sums}

    @classmethod
    def from_state(cls, state: Mapping[str, dict]) -> "Means":
        """A ``Means`` holding ``state`` (a ``state_dict()``), or an empty one for an empty mapping."""
        means = cls()
        if state:
            means.load_state_dict(state)
        return means

    def state_dict(self) -> dict[str, dict]:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: Mapping[str, dict]) -> None:
        self.sums.update(state["sums"])
        self.counts.update(state["counts"])


class StepSums:
    """Per-step scalars summed over a logging interval without a host read per step.

    0-dim tensors (the loss, a task's metrics) are summed where they are, on their device, in float64, so adding
    one never waits for the device; plain numbers (NFE, the learning rate) are summed on the host. ``read()``
    copies every tensor sum to the host in one transfer and returns the interval as ``Means``: the same sums, in
    the same order of additions, as converting each value to a Python float first.
    """

    def __init__(self) -> None:
        self._tensors: dict[str, torch.Tensor] = {}
        self._tensor_counts: dict[str, int] = defaultdict(int)
        self._numbers = Means()

    def update(self, values: Mapping[str, torch.Tensor | float]) -> None:
        for name, value in values.items():
            if not isinstance(value, torch.Tensor):
                self._numbers.add(name, float(value))
            elif name in self._tensors:
                self._tensors[name] += value.detach()
                self._tensor_counts[name] += 1
            else:
                self._tensors[name] = value.detach().to(torch.float64, copy=True)
                self._tensor_counts[name] = 1

    def read(self) -> Means:
        """The interval's sums and counts on the host (one device-to-host copy for all the tensors)."""
        means = Means()
        means.merge(self._numbers)
        if self._tensors:
            totals = torch.stack(list(self._tensors.values())).tolist()
            for name, total in zip(self._tensors, totals):
                means.add(name, total, self._tensor_counts[name])
        return means


class SavedTensorBytes:
    """Context manager counting the bytes saved for backward by the autograd graph built inside it.

    Usage::

        with SavedTensorBytes(model.parameters()) as saved:
            loss = model(x).sum()
        saved.bytes
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self._excluded = {tensor.untyped_storage().data_ptr() for tensor in exclude}
        self._seen: set[int] = set()
        self.bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in self._seen and pointer not in self._excluded:
            self._seen.add(pointer)
            self.bytes += storage.nbytes()
        return tensor

    def __enter__(self) -> "SavedTensorBytes":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._hooks.__exit__(*exc_info)
        self._seen.clear()


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor
