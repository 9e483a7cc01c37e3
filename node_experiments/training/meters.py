"""What the trainer measures besides the task's metrics: running means and the memory a batch needs.

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
            self.sums[name] += value
            self.counts[name] += 1

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
