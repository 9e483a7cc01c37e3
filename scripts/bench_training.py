"""Benchmark whole training steps: the project's solver against torchdiffeq on the same network, weights and batches.

    python scripts/bench_training.py --data-root /path/to/mnist [--steps 12] [--cases odenet,latent_ode] [--device cuda]
    python scripts/bench_training.py --data-root /path/to/mnist --threads-check --threads 2 [--background 1]

Each case builds the experiment's own task, model and data through the project's configs (``mnist_odenet``: real
MNIST batches of 128, dopri5 at rtol = atol = 1e-3, adjoint gradients; ``mnist_rknet``: the same, backpropagating
through the solver; ``mnist_resnet``; ``mnist_mlp``; ``spiral_latent_ode``: batches of 100 spirals, checkpointed
gradients), then copies the model and plugs torchdiffeq's ``odeint_adjoint`` / ``odeint`` into every ODE block of the copy (how a block
computes gradients is read in one place, ``gradient_mode``). The two copies start from the same weights and take
training steps (forward, loss, backward, optimizer step) on the same batches, alternating step by step in this
process (the order swapped each round), so that machine load falls on both alike. Models without an ODE block run
alone. Printed:
medians of CPU time (all threads of the process) and wall time per step, our time over torchdiffeq's, and NFE per
step; on CUDA also GPU time per step (CUDA events) and peak memory allocated.

``--threads-check`` times a case's step (the ODE-Net's unless ``--cases`` says otherwise) with our solver at the
default thread setting (``trainer.num_threads``, or ``--threads``) against one thread, alternating, while
``--background`` spinning processes (nice 19) keep cores busy: the default must not turn contention into a
collapse.

torchdiffeq is optional (``pip install -e '.[bench]'``); without it our figures are printed alone.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from torch import nn

from node_experiments.errors import RunError
from node_experiments.models.ode_block import ODEBlock
from node_experiments.tasks.base import Task, build_task, to_device
from node_experiments.training import resolve_device
from node_experiments.training.threads import configure_threads
from background_load import spinning

try:
    import torchdiffeq
except ImportError:  # the optional `bench` extra
    torchdiffeq = None

CASES = {
    "odenet": "mnist_odenet", "rknet": "mnist_rknet", "resnet": "mnist_resnet", "mlp": "mnist_mlp",
    "latent_ode": "spiral_latent_ode",
}  # fmt: skip
OURS, THEIRS = "node-experiments", "torchdiffeq"


def gradient_mode(block: ODEBlock) -> str:
    """How the block computes gradients (``solver.gradient``): ``adjoint``, ``backprop`` or ``checkpoint``."""
    return block.gradient


def torchdiffeq_solve(gradient: str) -> Callable[..., torch.Tensor]:
    """torchdiffeq's function for a gradient strategy. It has no checkpointed mode: its ``odeint`` (backprop) gives
    the same gradients, so that is the peer of ``checkpoint``."""
    return {"adjoint": torchdiffeq.odeint_adjoint, "backprop": torchdiffeq.odeint, "checkpoint": torchdiffeq.odeint}[
        gradient
    ]


def plug_torchdiffeq(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (same weights) whose ODE blocks solve with torchdiffeq, with the blocks' own settings."""
    model = copy.deepcopy(model)
    for block in model.modules():
        if isinstance(block, ODEBlock):
            solve, gradient = torchdiffeq_solve(gradient_mode(block)), gradient_mode(block)

            def trajectory(self: ODEBlock, h: torch.Tensor, t: torch.Tensor, solve=solve, gradient=gradient):
                settings = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self.options or None)
                if gradient == "adjoint":
                    settings["adjoint_options"] = self.adjoint_options or None
                return solve(self.func, h, t, **settings)

            block.trajectory = types.MethodType(trajectory, block)
    return model


class CallCounter:
    """Counts the calls of every ODE block's vector field (forward hooks): NFE measured alike for both libraries."""

    def __init__(self, model: nn.Module) -> None:
        self.calls = 0
        for block in model.modules():
            if isinstance(block, ODEBlock):
                block.func.register_forward_hook(self._count)

    def _count(self, *_: Any) -> None:
        self.calls += 1


@dataclass
class Runner:
    """One library's copy of the model, its optimizer, and the figures of its steps."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    counter: CallCounter
    threads: int | None = None  # torch threads for this runner's steps; None: leave the setting alone
    samples: dict[str, list[float]] = field(default_factory=dict)

    def record(self, **values: float) -> None:
        for key, value in values.items():
            self.samples.setdefault(key, []).append(value)

    def median(self, key: str) -> float | None:
        return statistics.median(self.samples[key]) if key in self.samples else None


def training_step(task: Task, runner: Runner, batch: Any, seed: int, device: torch.device) -> None:
    """One optimizer step on ``batch``, timed; ``seed`` makes a random step (the latent ODE's sample) the same for
    both libraries."""
    torch.manual_seed(seed)
    if runner.threads:
        torch.set_num_threads(runner.threads)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start_event.record()
    cpu, wall, calls = time.process_time(), time.perf_counter(), runner.counter.calls
    loss, _ = task.training_step(runner.model, batch)
    forward_calls = runner.counter.calls - calls
    runner.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    runner.optimizer.step()
    if cuda:
        end_event.record()
        torch.cuda.synchronize(device)
    runner.record(cpu_s=time.process_time() - cpu, wall_s=time.perf_counter() - wall, nfe_forward=forward_calls,
                  nfe_backward=runner.counter.calls - calls - forward_calls)  # fmt: skip
    if cuda:
        runner.record(gpu_s=start_event.elapsed_time(end_event) / 1000,
                      peak_mib=torch.cuda.max_memory_allocated(device) / 2**20)  # fmt: skip


def build_case(
    experiment: str, args: argparse.Namespace, device: torch.device
) -> tuple[Task, nn.Module, list[Any], Any]:
    """The experiment's task and model (seeded), and the first ``warmup + steps`` training batches on ``device``."""
    overrides = [f"experiment={experiment}", f"trainer.device={device}"]
    if experiment.startswith("mnist"):
        overrides += [f"data.root={args.data_root}", "data.download=false"]
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    torch.manual_seed(cfg.trainer.seed)
    task = build_task(cfg, device)
    model = task.build_model().to(device)
    loader, _ = task.dataloaders(torch.Generator().manual_seed(cfg.trainer.seed))
    batches = []
    while len(batches) < args.warmup + args.steps:
        batches += [to_device(batch, device) for batch in loader]
    return task, model, batches[: args.warmup + args.steps], cfg


def runners_for(model: nn.Module, cfg: Any, libraries: list[str]) -> list[Runner]:
    runners = []
    for name in libraries:
        copy_ = copy.deepcopy(model) if name == OURS else plug_torchdiffeq(model)
        optimizer = instantiate(cfg.optimizer, params=copy_.parameters())
        runners.append(Runner(name, copy_, optimizer, CallCounter(copy_)))
    return runners


def alternate(task: Task, runners: list[Runner], batches: list[Any], warmup: int, device: torch.device) -> None:
    """Every runner takes a step on each batch in turn; the order is reversed every round; warm-up steps dropped."""
    for index, batch in enumerate(batches):
        order = runners if index % 2 == 0 else runners[::-1]
        for runner in order:
            training_step(task, runner, batch, seed=index, device=device)
        if index + 1 == warmup:
            for runner in runners:
                runner.samples.clear()


def step_table(args: argparse.Namespace, device: torch.device) -> None:
    libraries = [OURS] + ([THEIRS] if torchdiffeq is not None else [])
    rows = []
    for case in args.cases.split(","):
        task, model, batches, cfg = build_case(CASES[case], args, device)
        has_ode = any(isinstance(module, ODEBlock) for module in model.modules())
        runners = runners_for(model, cfg, libraries if has_ode else [OURS])
        alternate(task, runners, batches, args.warmup, device)
        ours = runners[0]
        for runner in runners:
            ratio = {key: ours.median(key) / runner.median(key) for key in ("cpu_s", "wall_s")} if runner is not ours else {}
            rows.append({"case": case, "library": runner.name, **{key: runner.median(key) for key in runner.samples},
                         **{f"ours/theirs {key}": value for key, value in ratio.items()}})  # fmt: skip
        print(f"{case}: {len(runners[0].samples['cpu_s'])} paired steps", file=sys.stderr)
    print_table(rows)


def threads_check(args: argparse.Namespace, device: torch.device, threads: int) -> None:
    """Each case's step (our solver) with ``threads`` threads against one thread, under background load."""
    rows = []
    with spinning(args.background, niceness=19):
        for case in args.cases.split(","):
            task, model, batches, cfg = build_case(CASES[case], args, device)
            runners = runners_for(model, cfg, [OURS, OURS])
            for runner, count in zip(runners, (threads, 1)):
                runner.name, runner.threads = f"{count} thread{'s' if count > 1 else ''}", count
            alternate(task, runners, batches, args.warmup, device)
            one = runners[1]
            rows += [{"case": case, "threads": runner.name, **{key: runner.median(key) for key in runner.samples},
                      **{f"over 1 thread {key}": runner.median(key) / one.median(key) for key in ("cpu_s", "wall_s")}}
                     for runner in runners]  # fmt: skip
    print(f"background: {args.background} spinning process(es) at nice 19; {args.steps} paired steps per case\n")
    print_table(rows)


def compose_default_threads() -> Any:
    """``trainer.num_threads`` as the configs set it."""
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        return compose("config", overrides=["experiment=mnist_odenet"]).trainer.num_threads


def print_table(rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def fmt(value: Any) -> str:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 0.01 or abs(value) >= 1000 else f"{value:.3f}"
        return "" if value is None else str(value)

    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(fmt(row.get(column)) for column in columns) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("NODE_DATA_DIR", "data"),
                        help="folder holding MNIST/raw (default: $NODE_DATA_DIR, else ./data)")  # fmt: skip
    parser.add_argument("--cases", help=f"comma-separated, of: {', '.join(CASES)} (default: all; odenet with "
                        "--threads-check)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=12, help="timed steps per library and case")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads; default: trainer.num_threads")
    parser.add_argument("--threads-check", action="store_true", help="the thread setting against one thread")
    parser.add_argument("--background", type=int, default=1, help="spinning processes during --threads-check")
    args = parser.parse_args()
    args.cases = args.cases or ("odenet" if args.threads_check else ",".join(CASES))
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
    try:
        device = resolve_device(args.device)
        threads = configure_threads(compose_default_threads() if args.threads is None else args.threads)
        if args.threads_check:
            threads_check(args, device, threads)
            return
        if torchdiffeq is None:
            print("torchdiffeq is not installed (pip install -e '.[bench]'): printing node-experiments' figures alone.")
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"torch {torch.__version__}, {threads} threads, {where}; medians over {args.steps} steps per library\n")
        step_table(args, device)
    except RunError as error:
        sys.exit(f"bench_training: {error}")


if __name__ == "__main__":
    main()
