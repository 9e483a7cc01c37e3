"""``node-report model-state RUN FILE``: a run's trained model in a file small enough to commit.

    node-report model-state outputs/table1/e10/0_mnist_odenet docs/results/runs/table1/e10/0_mnist_odenet/model.pt
    node-run experiment=mnist_nfe_study study.checkpoint=docs/results/runs/table1/e10/0_mnist_odenet/model.pt

The trainer's checkpoint (``RUN/checkpoints/last.pt``, or a checkpoint file given as RUN) keeps everything needed to
resume training: optimizer state (as large again as the model for SGD with momentum), random states, history. This
writes ``{"model": state dict, "config": composed config}`` only, floating-point tensors in float32 and machine
paths in the config made neutral as ``node-report records`` makes them, which is all ``load_trained_run`` (and so
``study.checkpoint``) needs to rebuild the model. Put it beside the run's records, as above: the study then reads
the training history from the ``metrics.jsonl`` there (Figure 3d). A file over ``--limit-mib`` (default 1) is
refused, since it is meant for the repository; the ODE-Net of Table 1 (208,266 parameters) takes 0.8 MiB.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import RunError, ReportError
from ..training.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from . import Report
from .records import neutral

MIB = 2**20
MODEL_STATE_FILE = "model.pt"  # the name the reports look for beside a run's records


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="a run folder (holding checkpoints/last.pt) or a checkpoint file")
    parser.add_argument("file", type=Path, help="the model file to write (e.g. RECORDS/<run>/model.pt)")
    parser.add_argument("--limit-mib", type=float, default=1.0, help="refuse a file larger than this (default 1)")


def build(args: argparse.Namespace) -> Report:
    try:
        path = resolve_checkpoint(args.run, key="RUN")
        checkpoint = load_checkpoint(path, key="RUN", required=("model", "config"))
    except RunError as error:
        raise ReportError(str(error), exit_status=2) from None
    state = model_state(checkpoint["model"])
    run = args.run if args.run.is_dir() else path.parent
    save_checkpoint({"model": state, "config": neutral(checkpoint["config"], run)}, args.file)
    size = args.file.stat().st_size
    if size > args.limit_mib * MIB:
        args.file.unlink()
        raise ReportError(f"the model of {args.run} takes {size / MIB:.2f} MiB, over --limit-mib {args.limit_mib:g}: "
                          "it is meant for the repository. Raise --limit-mib if you mean to commit it anyway.")
    parameters = sum(tensor.numel() for tensor in state.values() if tensor.is_floating_point())
    return Report(f"{args.file}: the model of {args.run} ({parameters:,} floating-point values in float32), "
                  f"{size / MIB:.2f} MiB\n", [args.file])


def model_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with floating-point tensors in float32, each in storage of its own size."""
    return {name: (tensor.float() if tensor.is_floating_point() else tensor).detach().clone()
            for name, tensor in state.items()}
