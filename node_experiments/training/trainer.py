"""The shared trainer: one training loop for every experiment of the project.

It knows nothing of MNIST or spirals: a ``Task`` (``node_experiments.tasks.base``) supplies the model, the data,
the loss and the metrics; the trainer supplies everything around them, read top to bottom in ``train``:
seeding, device, optimizer and scheduler, the loop with gradient clipping, counting the solver's function
evaluations (NFE) forward and backward per batch with ``node_experiments.ode.record_stats``, memory and time,
a progress bar, TensorBoard / ``metrics.jsonl`` / ``summary.json``, a checkpoint each epoch, and resuming.

The step waits for nothing it does not need (docs/benchmarks.md): the loss and metrics stay on the device and
are read back once per logging interval, the device is synchronised only there (where the clocks are read), and
the bytes saved for backward are counted on a sample of steps. Per-epoch means stay exact: every step is summed.

How a run ends is part of its record (``summary.json``'s ``status``): it completes; it diverges (a NaN or
infinity in the loss, the gradients or the weights, or a finite loss above ``trainer.divergence_factor`` times
the run's loss scale, ``divergence``: stopped before a bad step reaches a checkpoint); a solve fails (the message
says at which epoch and batch); or it is interrupted by Ctrl-C, SIGTERM or a preemption signal (``signals``: a
checkpoint of the position reached is written first). The run folder is checked and held before training
(``run_folder``); resuming with other settings is refused or applied as ``trainer.resume_changes`` says
(``resume``). Checkpoints (``checkpoint``): ``last.pt`` at every epoch's end and on a stop signal, the one before
it as ``previous.pt``, and ``best.pt``, the epoch with the best value of the task's ``best_metric``; a mid-epoch
checkpoint holds the random states at the batch position, so that resuming it is exact for every model.

Config read here: ``trainer`` (device, max_epochs, seed, num_threads, grad_clip_norm, divergence_factor,
progress_bar, checkpoint, resume, resume_changes),
``optimizer`` and ``scheduler`` (Hydra ``_target_`` configs; the scheduler is stepped once per epoch),
``logger`` (tensorboard, log_every_n_steps) and ``task`` (which ``Task`` to build).
"""

from __future__ import annotations

import logging
import math
import random
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..errors import ConfigError, DivergedError, SolveFailedError, TrainingStopped
from ..ode import NonFiniteDerivativeError, SolverError, SolverStats, StiffnessError, record_stats
from ..tasks.base import Task, build_task, to_device
from .checkpoint import (
    BEST,
    CHECKPOINT_DIR,
    LAST,
    capture_global_rng,
    capture_rng,
    copy_checkpoint,
    load_checkpoint,
    restore_global_rng,
    save_checkpoint,
    where,
)
from .divergence import FiniteCheck, LossScale, Step, advice, check_weights, gradient_norm
from .meters import Means, SavedTensorBytes, StepSums
from .resume import restore, resume_changes_mode
from .run_folder import claim, resume_checkpoint, start_over
from .run_logger import COMPLETED, SUMMARY_FILE, RunLogger, write_json
from .signals import Interrupted, SignalStop
from .threads import configure_threads

log = logging.getLogger(__name__)


@dataclass
class Position:
    """Where training stands; saved in every checkpoint so that a run can continue from it."""

    epoch: int = 0  # epochs completed
    batches_done: int = 0  # batches of the epoch in progress already trained on
    step: int = 0  # optimizer steps taken in all
    train_time_s: float = 0.0  # wall time of the training loops so far (evaluation excluded)
    epoch_time_s: float = 0.0  # of the epoch in progress
    train_cpu_s: float = 0.0  # CPU time of this process in the training loops (all threads): robust to a busy machine
    epoch_cpu_s: float = 0.0  # of the epoch in progress
    epoch_means: dict = field(default_factory=dict)  # Means.state_dict() of the epoch in progress
    epoch_peak_bytes: int = 0  # of the epoch in progress
    history: list = field(default_factory=list)  # one record per completed epoch, as in metrics.jsonl
    first_loss: float | None = None  # the run's first training loss: the scale of trainer.divergence_factor


def train(
    cfg: DictConfig,
    run_dir: str | Path,
    labels: Mapping[str, Any] | None = None,
    on_start: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Train the task that ``cfg`` describes, writing everything under ``run_dir``; return the summary.

    ``labels`` (e.g. the experiment's name and the config groups chosen) are copied into ``summary.json``.
    ``on_start`` is called once the run holds its folder and has passed every check (its checkpoint restored when
    it resumes), before it writes anything there: ``node-run`` writes the run's record of its config then.
    """
    run_dir = Path(run_dir)
    settings = cfg.trainer
    resume_mode = resume_changes_mode(settings)
    resumed_from = resume_checkpoint(settings.resume) if settings.resume else None
    with claim(run_dir, settings.resume, settings.checkpoint):
        return _train(cfg, run_dir, dict(labels or {}), resumed_from, resume_mode, on_start)


def _train(
    cfg: DictConfig,
    run_dir: Path,
    labels: dict[str, Any],
    resumed_from: Path | None,
    resume_mode: str,
    on_start: Callable[[], None] | None,
) -> dict[str, Any]:
    """``train`` inside the run folder it holds."""
    settings = cfg.trainer
    device = resolve_device(settings.device)
    seed_everything(settings.seed)
    configure_threads(settings.get("num_threads", 1))

    task = build_task(cfg, device)
    model = task.build_model().to(device)
    generator = torch.Generator().manual_seed(settings.seed)
    train_loader, eval_loader = task.dataloaders(generator)
    optimizer = instantiate(cfg.optimizer, params=model.parameters())
    scheduler = instantiate(cfg.scheduler, optimizer=optimizer)
    config = OmegaConf.to_container(cfg, resolve=True)
    position = Position()
    settings_changed: list[dict[str, Any]] = []  # resumptions with other settings (trainer.resume_changes=apply)
    last_good = None  # (checkpoint file, where it stands) of the last checkpoint known to be good
    batch_rng: dict[str, Any] = {}  # "state": the global random states at the batch position (mid-epoch)
    if resumed_from:
        saved = load_checkpoint(resumed_from)
        state, settings_changed = restore(saved, resumed_from, config, resume_mode, model, optimizer, scheduler,
                                          generator)  # fmt: skip
        position = Position(**{name: value for name, value in state.items() if name in Position.__dataclass_fields__})
        batch_rng["state"] = saved["rng"].get("batch")
        last_good = (resumed_from, where(state))
        log.info("Resumed from %s: %d epochs done, %d batches into the next.", resumed_from, position.epoch,
                 position.batches_done)
        if len(settings_changed) > len(saved.get("settings_changed", [])):
            log.warning("Continuing with changed settings (trainer.resume_changes=apply): %s",
                        settings_changed[-1]["changes"])

    start_over(run_dir)  # a run killed before its first checkpoint left its metrics and events: they go
    if on_start is not None:
        on_start()
    logger = RunLogger(run_dir, tensorboard=cfg.logger.tensorboard)
    for record in position.history:  # the resumed run's metrics.jsonl holds the whole history
        logger.epoch(record)
    params = sum(p.numel() for p in model.parameters())
    log.info("%s: %s parameters on %s, %d epochs.", type(model).__name__, f"{params:,}", device, settings.max_epochs)
    learning_rate = lambda: optimizer.param_groups[0]["lr"]  # noqa: E731

    scale = LossScale(settings.get("divergence_factor"), _first_loss(position), _best_mean(position.history))

    def checkpoint(rng: dict[str, Any], best: bool = False) -> None:
        """last.pt of the position reached (the last good one kept as previous.pt), and best.pt when ``best``."""
        nonlocal last_good
        if settings.checkpoint:
            here = asdict(position)
            check_weights(model, f"at {where(here)}", learning_rate())  # never a NaN checkpoint
            path = run_dir / CHECKPOINT_DIR / LAST
            position.first_loss = scale.first
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "position": asdict(position),
                    "rng": rng,
                    "config": config,
                    "settings_changed": settings_changed,
                },
                path,
                keep_previous=last_good is not None and last_good[0].resolve() == path.resolve(),
            )
            if best:
                copy_checkpoint(path, path.with_name(BEST))
            last_good = (path, where(here))

    def position_rng() -> dict[str, Any]:
        """The random states a checkpoint of the position reached holds: the epoch's start, and mid-epoch the
        global states at the batch position."""
        if position.batches_done and batch_rng.get("state"):
            return {**epoch_start_rng, "batch": batch_rng["state"]}
        return epoch_start_rng

    finite = FiniteCheck(device, cfg.logger.log_every_n_steps, scale)
    stage = "training"  # or "evaluation", "figures": what a failed solve was doing
    outcome: BaseException | None = None
    # Outermost, so that summary.json is written before a preemption signal is passed on (under submitit the
    # handler it replaces requeues the job and exits).
    with SignalStop() as signals:
        try:
            epoch_start_rng = capture_rng(generator)  # a checkpoint mid-epoch replays the epoch from here
            if position.batches_done:  # resumed mid-epoch: the epoch's start is the checkpoint's
                epoch_start_rng = {key: value for key, value in saved["rng"].items() if key != "batch"}
            try:
                while position.epoch < settings.max_epochs:
                    stage = "training"
                    _train_epoch(task, model, optimizer, train_loader, position, logger, cfg, device, finite, signals,
                                 batch_rng)  # fmt: skip

                    stage = "evaluation"
                    model.eval()
                    eval_start = time.perf_counter()
                    with record_stats() as eval_stats:
                        test_metrics = task.evaluate(model, eval_loader)
                    model.train()
                    if "loss" in test_metrics:  # weights exploded by an epoch's last step show only here
                        when = f"the evaluation after epoch {position.epoch + 1} (learning rate {learning_rate():.3g})"
                        scale.check(test_metrics["loss"], "the test loss", when, learning_rate())
                    epoch_scalars = {
                        **{f"test/{name}": value for name, value in test_metrics.items()},
                        "nfe/test_forward": eval_stats.nfe_forward / max(len(eval_loader), 1),
                        "memory/peak_bytes": _peak_memory(device, position.epoch_peak_bytes),
                        "time/epoch_s": position.epoch_time_s,
                        "time/epoch_cpu_s": position.epoch_cpu_s,
                        "time/eval_s": time.perf_counter() - eval_start,
                    }
                    record = {"epoch": position.epoch + 1, "step": position.step,
                              **Means.from_state(position.epoch_means).means(), **epoch_scalars}
                    with signals.held():  # the epoch's record, position and checkpoint: all or nothing
                        logger.scalars(epoch_scalars, position.step)
                        logger.epoch(record)
                        log.info(_describe(record, settings.max_epochs))
                        with warnings.catch_warnings():  # resumed after the epoch's last step: no step in this process
                            warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()`"))
                            scheduler.step()
                        position.history.append(record)
                        scale.epoch_done(record.get("train/loss"))
                        position.train_time_s += position.epoch_time_s
                        position.train_cpu_s += position.epoch_cpu_s
                        position.epoch += 1
                        position.batches_done, position.epoch_means, position.epoch_peak_bytes = 0, {}, 0
                        position.epoch_time_s = position.epoch_cpu_s = 0.0
                        epoch_start_rng, batch_rng["state"] = capture_rng(generator), None
                        checkpoint(epoch_start_rng, best=_is_best(position.history, task.best_metric))

                stage = "figures"
                for name, figure in task.figures(model, eval_loader).items():
                    logger.figure(name, figure, position.step)
                    plt.close(figure)
            except KeyboardInterrupt:  # Ctrl-C, SIGTERM, a preemption signal: keep the position reached
                finite.flush()
                checkpoint(position_rng())
                raise
        except SolverError as error:  # a NaN or infinity in the field is a divergence; the rest, a failed solve
            kind = DivergedError if isinstance(error, NonFiniteDerivativeError) else SolveFailedError
            message = _solve_failed(error, stage, position, learning_rate())
            outcome = kind(f"{message} {_last_good(last_good, settings.checkpoint)}")
            raise outcome from None
        except TrainingStopped as error:
            outcome = type(error)(f"{error} {_last_good(last_good, settings.checkpoint)}")
            raise outcome from None
        except BaseException as error:
            outcome = error
            if isinstance(error, KeyboardInterrupt):
                outcome = _interrupted(error, last_good, settings.checkpoint)
                log.warning("%s", outcome.message)
            raise
        finally:
            with signals.held():
                summary = {
                    **_outcome(outcome),
                    **_summary(position, params, device, labels, resumed_from),
                    **(task.summary(position.history) if position.history else {}),
                    "settings_changed": settings_changed,
                }
                if outcome is None:
                    final = {tag: v for tag, v in position.history[-1].items() if tag.startswith(("test/", "nfe/"))}
                    logger.hyperparameters(config, final)
                logger.close()
                write_json(run_dir / SUMMARY_FILE, summary)
    return summary


def _train_epoch(
    task: Task,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    position: Position,
    logger: RunLogger,
    cfg: DictConfig,
    device: torch.device,
    finite: FiniteCheck,
    signals: SignalStop,
    batch_rng: dict[str, Any],
) -> None:
    """One pass over the training loader (or the rest of it, after a resume), updating ``position``.

    A stop signal stops the batch in progress, unless it came after the optimizer's step: then it is raised once
    the batch is counted in ``position`` (``signals.hold``). The step itself never waits for the device: the loss
    and the metrics are summed where they are and read back once per ``logger.log_every_n_steps`` steps
    (``_StepMeter``), and the bytes saved for backward are counted on a sample of steps only (``_measures_memory``).

    ``batch_rng["state"]`` holds the global random states after the last batch done, for a checkpoint taken
    mid-epoch (or during the epoch's evaluation); on resuming mid-epoch it holds the checkpoint's, restored once the
    batches done are drawn again.
    """
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    every = cfg.logger.log_every_n_steps
    meter = _StepMeter(position, device)
    bar = tqdm(
        total=len(loader),
        initial=position.batches_done,
        desc=f"epoch {position.epoch + 1}/{cfg.trainer.max_epochs}",
        disable=not (cfg.trainer.progress_bar and sys.stderr.isatty()),
        dynamic_ncols=True,
        leave=False,
    )
    try:
        batches = _skip(loader, position.batches_done)
        if position.batches_done and batch_rng.get("state"):
            restore_global_rng(batch_rng["state"])
        for batch in signals.between(batches):
            batch = to_device(batch, device)
            with record_stats() as stats:
                with _memory_sample(model, position, every) as saved:
                    loss, metrics = task.training_step(model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            grad_norm = gradient_norm(model.parameters(), cfg.trainer.grad_clip_norm)  # clipped when that is set
            lr = optimizer.param_groups[0]["lr"]
            finite.step(loss, grad_norm, Step(position.epoch + 1, position.batches_done + 1, len(loader), lr))
            signals.hold()  # the step and the position that counts it, together: a signal waits for the batch's end
            optimizer.step()

            meter.step({
                **{f"train/{name}": value for name, value in {"loss": loss, **metrics}.items()},
                **_nfe(stats),
                **({"memory/saved_bytes": saved.bytes} if saved else {}),
                "lr": lr,
            })  # fmt: skip
            if saved:
                position.epoch_peak_bytes = max(position.epoch_peak_bytes, saved.bytes)
            position.batches_done += 1
            position.step += 1
            batch_rng["state"] = capture_global_rng()
            bar.update()
            if position.step % every == 0:
                _log_interval(meter.flush(), position.step, logger, bar)
        finite.flush()
    except BaseException:  # a signal or an error: the checkpoint written next must hold every finished step
        meter.flush()
        bar.close()
        raise
    _log_interval(meter.flush(), position.step, logger, bar)
    bar.close()


class _StepMeter:
    """The loop's bookkeeping between two reads from the device.

    Each step's values are added to ``StepSums`` without a host read; ``flush`` (once per logging interval, at the
    end of the epoch and on an interruption) synchronises the device, reads the clocks and the sums back, adds
    them to the epoch's means, and updates ``position``. ``time/step_s`` is the interval's wall time per step,
    loading the batches included.
    """

    def __init__(self, position: Position, device: torch.device) -> None:
        self.position, self.device = position, device
        self.epoch_means = Means.from_state(position.epoch_means)
        self.epoch_start = time.perf_counter() - position.epoch_time_s
        self.epoch_cpu_start = time.process_time() - position.epoch_cpu_s
        self._open_interval()

    def _open_interval(self) -> None:
        self.sums, self.steps, self.started = StepSums(), 0, time.perf_counter()

    def step(self, values: Mapping[str, torch.Tensor | float]) -> None:
        self.sums.update(values)
        self.steps += 1

    def flush(self) -> dict[str, float]:
        """The means of the steps since the last flush (empty when there were none)."""
        if not self.steps:
            return {}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        interval = self.sums.read()
        interval.add("time/step_s", now - self.started, self.steps)
        self.epoch_means.merge(interval)
        self.position.epoch_means = self.epoch_means.state_dict()
        self.position.epoch_time_s = now - self.epoch_start
        self.position.epoch_cpu_s = time.process_time() - self.epoch_cpu_start
        self._open_interval()
        return interval.means()


def _memory_sample(model: nn.Module, position: Position, every: int) -> SavedTensorBytes | nullcontext:
    """Count the bytes saved for backward on the steps that ``_measures_memory`` picks; a no-op (``None``) else."""
    if _measures_memory(position, every):
        return SavedTensorBytes(exclude=model.parameters())
    return nullcontext()


def _measures_memory(position: Position, every: int) -> bool:
    """The first step of each epoch and every ``every``-th step (the last of each logging interval) are measured.

    Counting calls Python once per saved tensor, a cost no other step needs to pay; the sample depends on the
    step's position alone, so a resumed run measures the same steps as an uninterrupted one.
    """
    return position.batches_done == 0 or (position.step + 1) % every == 0


def _log_interval(means: Mapping[str, float], step: int, logger: RunLogger, bar: tqdm) -> None:
    """Send an interval's means to TensorBoard and show them on the progress bar."""
    if not means:
        return
    logger.scalars(means, step)
    shown = {name[len("train/") :]: f"{value:.4g}" for name, value in means.items() if name.startswith("train/")}
    bar.set_postfix({**shown, "nfe": f"{means['nfe/forward']:.0f}/{means['nfe/backward']:.0f}"}, refresh=False)


def _skip(loader: DataLoader, count: int) -> Iterator[Any]:
    """The loader's batches after the first ``count``, which are still loaded so they draw the same random numbers."""
    batches = iter(loader)
    for _ in range(count):
        next(batches)
    return batches


def _nfe(stats: SolverStats) -> dict[str, float]:
    return {"nfe/forward": stats.nfe_forward, "nfe/backward": stats.nfe_backward}


def _peak_memory(device: torch.device, saved_bytes: int) -> int:
    """CUDA: the most memory allocated during the epoch; CPU: the most bytes saved for backward by a measured batch."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else saved_bytes


def _describe(record: Mapping[str, Any], max_epochs: int) -> str:
    """One log line per epoch."""
    shown = {name: value for name, value in record.items() if name.startswith(("train/", "test/", "nfe/"))}
    text = ", ".join(f"{name} {value:.4g}" for name, value in shown.items())
    return f"epoch {record['epoch']}/{max_epochs} ({record['time/epoch_s']:.1f} s): {text}"


def _summary(
    position: Position, params: int, device: torch.device, labels: Mapping[str, Any], resumed_from: Path | None
) -> dict[str, Any]:
    """summary.json: the final epoch's metrics, NFE per batch and memory, with the run's totals (null where a run
    stopped before its first epoch ended)."""
    last = position.history[-1] if position.history else {}
    return {
        **labels,
        "params": params,
        "epochs": position.epoch,
        **{f"test_{tag[len('test/'):]}": value for tag, value in last.items() if tag.startswith("test/")},
        "train_loss": last.get("train/loss"),
        "nfe_forward": last.get("nfe/forward"),
        "nfe_backward": last.get("nfe/backward"),
        "nfe_test_forward": last.get("nfe/test_forward"),
        "peak_memory_bytes": max((record["memory/peak_bytes"] for record in position.history), default=None),
        "saved_bytes_per_batch": last.get("memory/saved_bytes"),
        "train_time_s": position.train_time_s,
        "epoch_time_s": position.train_time_s / len(position.history) if position.history else None,
        "train_cpu_s": position.train_cpu_s,
        "step_time_s": last.get("time/step_s"),
        "device": _device_name(device),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "resumed_from": str(resumed_from) if resumed_from else None,
    }


def _outcome(error: BaseException | None) -> dict[str, Any]:
    """summary.json's ``status`` (see ``run_logger.COMPLETED``), with the message of a run that did not complete."""
    if error is None:
        return {"status": COMPLETED}
    if isinstance(error, _Stopped):
        return {"status": "interrupted", "signal": error.signal_name, "message": error.message}
    status = error.status if isinstance(error, TrainingStopped) else "failed"
    return {"status": status, "message": str(error) or type(error).__name__}


class _Stopped(Exception):
    """How a run stopped by a signal ended, for its summary: the signal's name and the message it logged."""

    def __init__(self, signal_name: str, message: str) -> None:
        super().__init__(message)
        self.signal_name, self.message = signal_name, message


def _first_loss(position: Position) -> float | None:
    """The run's first training loss; for a checkpoint written before it was kept, its first epoch's mean."""
    if position.first_loss is not None:
        return position.first_loss
    return position.history[0].get("train/loss") if position.history else None


def _best_mean(history: list[dict[str, Any]]) -> float | None:
    """The lowest finite epoch mean of the training loss in ``history``; None when there is none."""
    means = [record.get("train/loss") for record in history]
    finite = [mean for mean in means if isinstance(mean, (int, float)) and math.isfinite(mean)]
    return min(finite, default=None)


def _is_best(history: list[dict[str, Any]], metric: tuple[str, str]) -> bool:
    """Whether the last epoch of ``history`` has the best finite ``test/<name>`` so far (``metric``: the task's
    ``best_metric``, name and min or max)."""
    name, mode = metric
    values = [record.get(f"test/{name}") for record in history]
    if not values or not isinstance(values[-1], (int, float)) or not math.isfinite(values[-1]):
        return False
    earlier = [value for value in values[:-1] if isinstance(value, (int, float)) and math.isfinite(value)]
    sign = 1 if mode == "min" else -1
    return all(sign * values[-1] < sign * value for value in earlier)


def _last_good(last_good: tuple[Path, str] | None, checkpoints: bool) -> str:
    """The sentence a stopped run ends with: where its last good checkpoint is, or why there is none."""
    if last_good is None:
        why = "trainer.checkpoint=false" if not checkpoints else "the run stopped in its first epoch"
        return f"No checkpoint was written ({why})."
    path, where = last_good
    return (
        f"The last good checkpoint, at {where}, is kept at {path}: continue from it with "
        f"trainer.resume={_run_folder(path)} and the settings you change, plus trainer.resume_changes=apply."
    )


def _run_folder(checkpoint: Path) -> Path:
    """What to give trainer.resume for ``checkpoint``: its run folder when it is that folder's last.pt."""
    return checkpoint.parent.parent if checkpoint.name == LAST and checkpoint.parent.name == CHECKPOINT_DIR else checkpoint


def _solve_failed(error: SolverError, stage: str, position: Position, lr: float) -> str:
    """The message of a solve that failed, with where in the run it happened and what to try."""
    if stage == "training":
        where = f"epoch {position.epoch + 1}, batch {position.batches_done + 1}"
    else:
        where = f"the {stage} after epoch {position.epoch + (stage == 'evaluation')}"
    where += f" (learning rate {lr:.3g})"
    if isinstance(error, NonFiniteDerivativeError):
        return f"training diverged at {where}: a solve of the model's ODE met NaN or infinity ({error}).{advice(lr)}"
    if isinstance(error, StiffnessError):
        return (
            f"a solve of the model's ODE failed at {where}: {error} The dynamics have stiffened as they trained."
            f"{advice(lr)} To integrate on regardless: +solver.options.stiffness_check=false."
        )
    return (
        f"a solve of the model's ODE failed at {where}: {error} The dynamics may have stiffened or diverged as they "
        f"trained.{advice(lr)} Raise solver.options.max_num_steps (or solver.adjoint_options.max_num_steps) only if "
        "the model needs more steps."
    )


def _interrupted(error: KeyboardInterrupt, last_good: tuple[Path, str] | None, checkpoints: bool) -> _Stopped:
    """How the run stopped and how to continue it (the checkpoint, when written, is of the position reached)."""
    signal_name = error.name if isinstance(error, Interrupted) else "SIGINT"
    if last_good is None or not checkpoints:
        return _Stopped(signal_name, f"Stopped by {signal_name}. No checkpoint was written (trainer.checkpoint=false).")
    path, at = last_good
    return _Stopped(signal_name, f"Stopped by {signal_name}: checkpoint of {at} written to {path}. Continue with "
                                 f"trainer.resume={_run_folder(path)}")  # fmt: skip


def resolve_device(spec: str) -> torch.device:
    """``trainer.device``: ``auto`` is CUDA when there is a GPU, else the CPU (``node_experiments.validation`` has
    checked that the device exists)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (every device), for the model's initialisation and the augmentation."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
