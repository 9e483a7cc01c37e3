"""Benchmark the project's solver against torchdiffeq, in one process, interleaved, median of several runs.

    python scripts/bench_solver.py [--repeats 5] [--only loop,batched,compute,memory,latent,precision]
                                   [--threads N] [--busy K] [--baseline GIT_REVISION]

Prints one Markdown table per case, then the time ratios against torchdiffeq (and --baseline). Cases:

1. loop-bound: the cubic spiral dy/dt = (y**3) @ A, 1000 output times on [0, 25], dopri5, rtol 1e-7, atol 1e-9,
   in float64;
   wall time, NFE and the max error against scipy's DOP853 at rtol 1e-12;
2. batched: Van der Pol (mu = 2), a batch of 256 states, rtol = atol = 1e-5, 200 output times on [0, 10];
3. compute-bound: the MNIST ODE-Net block (64 channels, 6x6, batch 128), t in [0, 1], tol 1e-3, forward and
   backward with each gradient strategy (adjoint, adjoint with the seminorm, backprop, checkpoint) and
   torchdiffeq's ``odeint_adjoint`` (with and without the seminorm) and ``odeint``: time, NFE, bytes saved for
   backward;
4. memory: bytes saved for backward by each strategy at rtol 1e-3, 1e-5, 1e-7 on a small neural vector field
   (counted with ``torch.autograd.graph.saved_tensors_hooks``);
5. latent ODE: one training step (loss and backward) of the project's latent ODE at its default sizes and
   solver settings (``experiment=spiral_latent_ode``), on a batch of 100 spirals solved on the union of their
   irregular times (100 output times), for each strategy and torchdiffeq's two: time per step, NFE;
6. precision: work against error of the low-order adaptive methods (and dopri5 for reference) beside
   torchdiffeq's, over tolerances 1e-3 .. 1e-7, on the cubic spiral (float64).

Both libraries get the same vector-field module and the same inputs; a counting wrapper measures NFE the same
way for both. torchdiffeq is optional (``pip install -e '.[bench]'``); without it the script prints our figures
alone and says so.

``--threads N`` sets torch's intra-op threads (default: torch's own choice); ``--cpu-time`` times with the
process's CPU time rather than wall time (steadier on a loaded machine); ``--busy K`` keeps K other processes
spinning at low priority (``nice -n 10``) while it measures, the condition of a shared machine; ``--baseline REV``
adds the solver as it was at git revision REV (``node_experiments/ode`` read from git, imported under another name)
as a third library in the timed cases, interleaved with the others, to measure a change before and after.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from node_experiments.models.mnist import ConvODEFunc
from node_experiments.ode import odeint, odeint_adjoint, odeint_checkpoint, record_stats
from node_experiments.training.meters import SavedTensorBytes
from background_load import spinning

try:
    import torchdiffeq
except ImportError:  # the optional `bench` extra
    torchdiffeq = None

BASELINE: tuple[str, object] | None = None  # (label, module) of --baseline: the solver at an earlier revision


def load_baseline(revision: str):
    """``node_experiments/ode`` as it was at git ``revision``, imported as a package of its own (it depends on torch
    alone and imports its modules relatively, so a copy of its files runs beside the current one)."""
    root = Path(__file__).resolve().parent.parent
    git = lambda *args: subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout
    folder = Path(tempfile.mkdtemp()) / "baseline_ode"
    folder.mkdir()
    for path in git("ls-tree", "--name-only", revision, "node_experiments/ode/").split():
        if path.endswith(".py"):
            (folder / Path(path).name).write_text(git("show", f"{revision}:{path}"))
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module("baseline_ode")


class Counted(nn.Module):
    """Wraps a vector field and counts its calls: NFE measured identically for both libraries."""

    def __init__(self, func: nn.Module):
        super().__init__()
        self.func = func
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.func(t, y)


class CubicSpiral(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("A", torch.tensor([[-0.1, 2.0], [-2.0, -0.1]]))

    def forward(self, t, y):
        return (y**3) @ self.A


class VanDerPol(nn.Module):
    def __init__(self, mu: float = 2.0):
        super().__init__()
        self.mu = mu

    def forward(self, t, y):
        x, v = y[:, 0], y[:, 1]
        return torch.stack([v, self.mu * (1 - x * x) * v - x], dim=1)


class SmallField(nn.Module):
    """A small neural vector field for the memory case: 2 -> 64 -> 2 with tanh, batch 256."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 2))

    def forward(self, t, y):
        return self.net(y)


def libraries() -> list[tuple[str, Callable, Callable]]:
    libs = [("node-experiments", odeint, odeint_adjoint)]
    if BASELINE is not None:
        libs.append((BASELINE[0], BASELINE[1].odeint, BASELINE[1].odeint_adjoint))
    if torchdiffeq is not None:
        libs.append(("torchdiffeq", torchdiffeq.odeint, torchdiffeq.odeint_adjoint))
    return libs


CLOCK = time.perf_counter  # --cpu-time: time.process_time


def median_time(run: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = CLOCK()
        run()
        times.append(CLOCK() - start)
    return times


class Timing(float):
    """A median time that keeps the samples it is the median of (one per round of ``interleaved``)."""

    samples: list[float]

    @classmethod
    def of(cls, samples: list[float]) -> "Timing":
        timing = cls(statistics.median(samples))
        timing.samples = samples
        return timing


def paired_ratio(a: Timing, b: Timing) -> float:
    """The median over rounds of ``a``'s time over ``b``'s in the same round: steadier than a ratio of medians, as
    both runs of a round meet about the same load."""
    return statistics.median(x / y for x, y in zip(a.samples, b.samples))


def interleaved(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timing]:
    """Median time of each case, the cases run round-robin so machine load affects all alike."""
    for run in cases.values():  # warm-up
        run()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            samples[name] += median_time(run, 1)
    return {name: Timing.of(values) for name, values in samples.items()}


def scipy_reference(func: Callable[[np.ndarray], np.ndarray], y0: np.ndarray, t: np.ndarray) -> np.ndarray:
    from scipy.integrate import solve_ivp

    sol = solve_ivp(lambda _, y: func(y), (t[0], t[-1]), y0, method="DOP853", t_eval=t, rtol=1e-12, atol=1e-12)
    return sol.y.T


def loop_bound(repeats: int) -> list[dict]:
    # float64: rtol 1e-7 and atol 1e-9 lie below float32's resolution (eps 1.2e-7), where rounding, not the
    # method, would decide the error.
    field = Counted(CubicSpiral()).double()
    y0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    t = torch.linspace(0.0, 25.0, 1000, dtype=torch.float64)
    A = field.func.A.double().numpy()
    reference = scipy_reference(lambda y: (y**3) @ A, y0.double().numpy()[0], t.double().numpy())
    rows = []
    solves = {name: (lambda fn=fn: fn(field, y0, t, rtol=1e-7, atol=1e-9, method="dopri5")) for name, fn, _ in libraries()}
    times = interleaved(solves, repeats)
    for name, solve in solves.items():
        field.calls = 0
        ys = solve()
        error = float(np.abs(ys[:, 0].numpy() - reference).max())
        rows.append(dict(case="1. loop-bound: cubic spiral (float64)", library=name, time_s=times[name], nfe=field.calls, max_error=error))
    return rows


def batched(repeats: int) -> list[dict]:
    field = Counted(VanDerPol(2.0))
    y0 = torch.rand(256, 2, generator=torch.Generator().manual_seed(0)) * 4 - 2
    t = torch.linspace(0.0, 10.0, 200)
    solves = {name: (lambda fn=fn: fn(field, y0, t, rtol=1e-5, atol=1e-5, method="dopri5")) for name, fn, _ in libraries()}
    times = interleaved(solves, repeats)
    rows = []
    for name, solve in solves.items():
        field.calls = 0
        solve()
        rows.append(dict(case="2. batched: Van der Pol x256", library=name, time_s=times[name], nfe=field.calls))
    return rows


def strategies() -> list[tuple[str, str, Callable, dict]]:
    """(label, library, solve function, extra keywords) for every way to gradients this script compares."""
    rows = [
        ("adjoint", "node-experiments", odeint_adjoint, {}),
        ("adjoint + seminorm", "node-experiments", odeint_adjoint, {"adjoint_options": {"norm": "seminorm"}}),
        ("backprop", "node-experiments", odeint, {}),
        ("checkpoint", "node-experiments", odeint_checkpoint, {}),
    ]
    if BASELINE is not None:
        label, module = BASELINE
        rows += [("adjoint", label, module.odeint_adjoint, {}), ("backprop", label, module.odeint, {}),
                 ("checkpoint", label, module.odeint_checkpoint, {})]  # fmt: skip
    if torchdiffeq is not None:
        rows += [
            ("odeint_adjoint", "torchdiffeq", torchdiffeq.odeint_adjoint, {}),
            ("odeint_adjoint + seminorm", "torchdiffeq", torchdiffeq.odeint_adjoint,
             {"adjoint_options": {"norm": "seminorm"}}),
            ("odeint", "torchdiffeq", torchdiffeq.odeint, {}),
        ]  # fmt: skip
    return rows


def forward_backward(field: Counted, run_forward: Callable[[], torch.Tensor]) -> Callable[[], tuple[int, int]]:
    """A step that runs ``run_forward`` and backpropagates its result; returns the (forward, backward) NFE."""

    def step() -> tuple[int, int]:
        field.calls = 0
        loss = run_forward()
        forward_calls = field.calls
        loss.backward()
        return forward_calls, field.calls - forward_calls

    return step


def saved_bytes(run_forward: Callable[[], torch.Tensor], params) -> int:
    """Bytes the forward pass saves for backward (each storage once, parameters excluded)."""
    with SavedTensorBytes(exclude=params) as saved:
        loss = run_forward()
    loss.backward()
    return saved.bytes


def compute_bound(repeats: int) -> list[dict]:
    torch.manual_seed(0)
    field = Counted(ConvODEFunc(64))
    x = torch.randn(128, 64, 6, 6)
    t = torch.tensor([0.0, 1.0])
    forwards, steps = {}, {}
    for label, library, solve, extra in strategies():

        def run_forward(solve=solve, extra=extra):
            field.zero_grad(set_to_none=True)
            return solve(field, x.clone().requires_grad_(True), t, rtol=1e-3, atol=1e-3, method="dopri5", **extra)[
                -1
            ].square().mean()

        forwards[(label, library)] = run_forward
        steps[(label, library)] = forward_backward(field, run_forward)
    times = interleaved(steps, repeats)
    rows = []
    for key, step in steps.items():
        nfe_f, nfe_b = step()
        rows.append(dict(
            case="3. compute-bound: ODE-Net block, forward + backward", library=key[1], gradient=key[0],
            time_s=times[key], nfe=f"{nfe_f} fwd / {nfe_b} bwd",
            saved_bytes=saved_bytes(forwards[key], list(field.parameters())),
        ))  # fmt: skip
    return rows


def memory() -> list[dict]:
    torch.manual_seed(0)
    field = SmallField()
    y0 = torch.randn(256, 2)
    t = torch.tensor([0.0, 5.0])
    rows = []
    params = list(field.parameters())
    for label, solve in (("backprop", odeint), ("adjoint", odeint_adjoint), ("checkpoint", odeint_checkpoint)):
        for rtol in (1e-3, 1e-5, 1e-7):
            counted = Counted(field)
            with SavedTensorBytes(exclude=params) as saved:
                solve(counted, y0.clone().requires_grad_(True), t, rtol=rtol, atol=rtol * 1e-2, method="dopri5")
            rows.append(dict(
                case="4. memory: 2-64-2 tanh field x 256, t in [0, 5]", library="node-experiments", gradient=label,
                rtol=rtol, nfe=counted.calls, saved_bytes=saved.bytes,
            ))  # fmt: skip
    return rows


def latent_ode(repeats: int) -> list[dict]:
    """One training step of the latent ODE (``experiment=spiral_latent_ode``'s model and solver) on 100 spirals."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from node_experiments.data.spirals import make_spirals
    from node_experiments.models.latent_ode import LatentODE

    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=spiral_latent_ode"])
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    solver = model_cfg.pop("solver")
    model_cfg.pop("_target_")
    spirals = make_spirals(n_spirals=100, n_obs=cfg.data.n_obs, window=cfg.data.window, seed=0)
    observations, obs_times = spirals.observations, spirals.obs_times
    torch.manual_seed(0)
    model = LatentODE(**model_cfg, solver=solver)
    block = model.ode
    block.func = field = Counted(block.func)
    settings = dict(rtol=block.rtol, atol=block.atol, method=block.method)

    steps = {}
    for label, library, solve, extra in strategies():
        if "seminorm" in label:
            continue

        def trajectory(h, t, solve=solve, extra=extra):  # ODEBlock.trajectory, solved by this strategy
            return solve(block.func, h, t, **settings, **extra)

        def run_forward(trajectory=trajectory):
            model.zero_grad(set_to_none=True)
            block.trajectory = trajectory
            torch.manual_seed(1)  # the same posterior sample every time
            return model.loss(observations, obs_times)[0]

        steps[(label, library)] = forward_backward(field, run_forward)
    times = interleaved(steps, repeats)
    union = torch.unique(obs_times)
    outputs = len(union) + int(union[0] > 0)  # the solve starts at t = 0
    rows = []
    for key, step in steps.items():
        nfe_f, nfe_b = step()
        rows.append(dict(
            case=f"5. latent ODE training step: batch 100, {outputs} output times",
            library=key[1], gradient=key[0], time_s=times[key], nfe=f"{nfe_f} fwd / {nfe_b} bwd",
        ))  # fmt: skip
    return rows


def precision() -> list[dict]:
    """NFE and max error against tolerance: does a tolerance buy the same accuracy for the same work?"""
    field = Counted(CubicSpiral()).double()
    y0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    t = torch.linspace(0.0, 10.0, 50, dtype=torch.float64)
    A = field.func.A.double().numpy()
    reference = scipy_reference(lambda y: (y**3) @ A, y0.numpy()[0], t.numpy())
    rows = []
    for method in ("adaptive_heun", "fehlberg2", "bosh3", "dopri5"):
        for tol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7):
            for library, solve, _ in libraries():
                field.calls = 0
                with record_stats() as stats:
                    ys = solve(field, y0, t, rtol=tol, atol=tol, method=method)
                rows.append(dict(
                    case=f"6. precision: {method}, cubic spiral (float64)", library=library, rtol=tol,
                    nfe=field.calls, steps=stats.accepted_steps + stats.rejected_steps if library == "node-experiments" else None,
                    max_error=float(np.abs(ys[:, 0].numpy() - reference).max()),
                ))  # fmt: skip
    return rows


def print_tables(rows: list[dict]) -> None:
    """One Markdown table per case (the text before the case's colon names it)."""
    columns = ["library", "gradient", "rtol", "time_s", "nfe", "steps", "max_error", "saved_bytes"]

    def fmt(value):
        if isinstance(value, float):
            return f"{value:.3g}" if value < 1e-2 or value >= 1e4 else f"{value:.4f}".rstrip("0").rstrip(".")
        if isinstance(value, int) and value >= 10_000:
            return f"{value:,}"
        return "" if value is None else str(value)

    for case in dict.fromkeys(row["case"] for row in rows):
        group = [row for row in rows if row["case"] == case]
        shown = [c for c in columns if any(row.get(c) is not None for row in group)]
        print(f"\n{case}\n")
        print("| " + " | ".join(shown) + " |")
        print("|" + "---|" * len(shown))
        for row in group:
            print("| " + " | ".join(fmt(row.get(c)) for c in shown) + " |")


def ratios(rows: list[dict]) -> None:
    """Our speed-up over torchdiffeq where both ran alone, and the ratios the gradient strategies are held to."""
    by_case: dict[str, dict[str, dict]] = {}
    for row in rows:
        if "time_s" in row and "gradient" not in row:
            by_case.setdefault(row["case"], {})[row["library"]] = row
    for case, libs in by_case.items():
        ours = libs["node-experiments"]["time_s"]
        if "torchdiffeq" in libs:
            print(f"- {case}: {libs['torchdiffeq']['time_s'] / ours:.2f}x faster than torchdiffeq (time ratio "
                  f"{ours / libs['torchdiffeq']['time_s']:.2f})")  # fmt: skip
        if BASELINE is not None and BASELINE[0] in libs:
            before = libs[BASELINE[0]]["time_s"]
            print(f"- {case}: time {ours / before:.3f}x {BASELINE[0]}'s (paired: {paired_ratio(ours, before):.3f}x)")
    if BASELINE is not None:
        for (case, gradient), row in sorted(strategy_rows(rows).items()):
            before = strategy_rows(rows, BASELINE[0]).get((case, gradient))
            if before is not None:
                print(f"- case {case} {gradient}: time {row['time_s'] / before['time_s']:.3f}x {BASELINE[0]}'s "
                      f"(paired: {paired_ratio(row['time_s'], before['time_s']):.3f}x)")  # fmt: skip
    strategy = {(row["case"][:2], row["gradient"]): row for row in rows if "gradient" in row}
    ode_net = {g: r for (c, g), r in strategy.items() if c == "3."}
    if {"checkpoint", "adjoint", "backprop"} <= ode_net.keys():
        check, adj, back = ode_net["checkpoint"], ode_net["adjoint"], ode_net["backprop"]
        print(f"- ODE-Net block, checkpoint: saved bytes {check['saved_bytes'] / adj['saved_bytes']:.2f}x the "
              f"adjoint's and {check['saved_bytes'] / back['saved_bytes']:.3f}x backprop's; time "
              f"{check['time_s'] / adj['time_s']:.2f}x the adjoint's")  # fmt: skip
    latent = {g: r for (c, g), r in strategy.items() if c == "5."}
    if {"checkpoint", "backprop"} <= latent.keys():
        line = f"- latent ODE, checkpoint: time per step {latent['checkpoint']['time_s'] / latent['backprop']['time_s']:.2f}x backprop's"
        if "odeint_adjoint" in latent:
            line += f", {latent['checkpoint']['time_s'] / latent['odeint_adjoint']['time_s']:.2f}x torchdiffeq's odeint_adjoint's"
        print(line + f"; adjoint {latent['adjoint']['time_s'] / latent['checkpoint']['time_s']:.1f}x checkpoint's")


def strategy_rows(rows: list[dict], library: str = "node-experiments") -> dict[tuple[str, str], dict]:
    """The timed rows of one library in the cases that compare gradient strategies, by (case number, gradient)."""
    return {(row["case"][:2], row["gradient"]): row for row in rows
            if "gradient" in row and "time_s" in row and row["library"] == library}  # fmt: skip


def main() -> None:
    global BASELINE, CLOCK
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="loop,batched,compute,memory,latent,precision")
    parser.add_argument("--threads", type=int, default=None, help="torch's intra-op threads (default: torch's)")
    parser.add_argument("--busy", type=int, default=0, help="other processes kept spinning while measuring")
    parser.add_argument("--baseline", default=None, help="also time the solver at this git revision")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process's CPU time instead of wall time (steadier on a loaded machine)")
    args = parser.parse_args()
    if args.cpu_time:
        CLOCK = time.process_time
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.baseline is not None:
        BASELINE = (f"node-experiments @{args.baseline}", load_baseline(args.baseline))
    torch.set_grad_enabled(True)
    if torchdiffeq is None:
        print("torchdiffeq is not installed (pip install -e '.[bench]'): printing node-experiments' figures alone.\n")
    wanted = set(args.only.split(","))
    with spinning(args.busy, niceness=10):
        rows = measure(wanted, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; float32 unless stated; "
          f"{'CPU' if args.cpu_time else 'wall'} time"
          + (f"; {args.busy} other processes spinning (nice 10) throughout" if args.busy else ""))
    print_tables(rows)
    print()
    ratios(rows)


def measure(wanted: set[str], repeats: int) -> list[dict]:
    """The rows of every case in ``wanted``."""
    rows: list[dict] = []
    if "loop" in wanted:
        rows += loop_bound(repeats)
    if "batched" in wanted:
        rows += batched(repeats)
    if "compute" in wanted:
        rows += compute_bound(max(1, repeats // 2))
    if "memory" in wanted:
        rows += memory()
    if "latent" in wanted:
        rows += latent_ode(repeats)
    if "precision" in wanted:
        rows += precision()
    return rows


if __name__ == "__main__":
    main()
