"""Where a run's numbers go: TensorBoard events under ``<run>/tb``, ``metrics.jsonl`` and ``summary.json``.

Tags are grouped as ``train/*``, ``test/*``, ``nfe/*``, ``memory/*``, ``time/*`` and ``lr``; every scalar's x
axis is the global step. ``metrics.jsonl`` holds one JSON object per epoch with the same names.

Both files are strict JSON, which every parser reads: a NaN or infinite value is written as ``null``.
``summary.json`` is written however a run ends; its ``status`` says how (see ``COMPLETED``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from torch.utils.tensorboard import FileWriter, SummaryWriter
from torch.utils.tensorboard.summary import hparams

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
# summary.json's ``status`` when all epochs are done; the others: ``diverged`` and ``solver_failed`` (the
# ``status`` of ``errors.TrainingStopped``'s subclasses), ``interrupted`` (Ctrl-C, SIGTERM, a preemption signal:
# a checkpoint holds the position reached) and ``failed`` (any other error).
COMPLETED = "completed"


class RunLogger:
    """Writes scalars, per-epoch records, figures and hyperparameters of one run."""

    def __init__(self, run_dir: Path, *, tensorboard: bool) -> None:
        self.run_dir = run_dir
        self.writer = SummaryWriter(log_dir=str(run_dir / "tb")) if tensorboard else None
        (run_dir / METRICS_FILE).write_text("", encoding="utf-8")  # a reused run folder starts a fresh history

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Log named scalars (TensorBoard tags) at the global ``step``."""
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def epoch(self, record: Mapping[str, Any]) -> None:
        """Append an epoch's record to metrics.jsonl (TensorBoard gets its scalars through ``scalars``)."""
        with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as file:
            file.write(strict_json(record) + "\n")

    def figure(self, name: str, figure: Figure, step: int) -> None:
        """Save ``figure`` as <run>/figures/<name>.png and to TensorBoard."""
        folder = self.run_dir / "figures"
        folder.mkdir(exist_ok=True)
        figure.savefig(folder / f"{name}.png", dpi=120, bbox_inches="tight")
        if self.writer is not None:
            self.writer.add_figure(f"figures/{name}", figure, step, close=False)

    def hyperparameters(self, config: Mapping[str, Any], final_metrics: Mapping[str, float]) -> None:
        """Record the run's hyperparameters with its final metrics (TensorBoard's HPARAMS tab).

        The metric names are scalar tags already logged, so TensorBoard shows their last values. The three hparams
        summaries go into a second event file of the run's own ``tb`` folder, written by torch's public
        ``FileWriter``: ``SummaryWriter`` has no public call that writes a ready summary (``add_hparams`` opens a
        sub-run and logs the metrics there again as scalars). TensorBoard reads every event file of a folder as one
        run; the scalars are flushed first, so a live TensorBoard, which moves on to the newer file, misses none.
        """
        if self.writer is None:
            return
        flat = {key: _hparam_value(value) for key, value in flatten(config).items()}
        self.writer.flush()
        file_writer = FileWriter(self.writer.get_logdir(), filename_suffix=".hparams")
        for summary in hparams(flat, dict(final_metrics)):
            file_writer.add_summary(summary)
        file_writer.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def write_json(path: Path, value: Any) -> None:
    path.write_text(strict_json(value, indent=2) + "\n", encoding="utf-8")


def strict_json(value: Any, indent: int | None = None) -> str:
    """``value`` as strict JSON: NaN and infinities, which ``json.dumps`` would write bare, become ``null``."""
    return json.dumps(_finite_or_none(value), indent=indent, allow_nan=False)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"solver": {"rtol": 1e-3}} -> {"solver.rtol": 1e-3}."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _hparam_value(value: Any) -> bool | int | float | str:
    """TensorBoard takes bools, numbers and strings; anything else is shown as text."""
    if isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return str(value)
