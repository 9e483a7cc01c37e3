"""Benchmark the project's solver against torchdiffeq, in one process, interleaved, median of several runs.

    python scripts/bench_solver.py [--repeats 5] [--only loop,batched,compute,memory]

Prints one Markdown table. Cases (see the solver issue for the targets):

1. loop-bound: the cubic spiral dy/dt = (y**3) @ A, 1000 output times on [0, 25], dopri5, rtol 1e-7, atol 1e-9,
   in float64;
   wall time, NFE and the max error against scipy's DOP853 at rtol 1e-12;
2. batched: Van der Pol (mu = 2), a batch of 256 states, rtol = atol = 1e-5, 200 output times on [0, 10];
3. compute-bound: the MNIST ODE-Net block (64 channels, 6x6, batch 128), t in [0, 1], tol 1e-3, forward and
   adjoint backward, without and with the seminorm;
4. memory: bytes saved for backward by ``odeint`` (direct backprop) and ``odeint_adjoint`` at rtol 1e-3, 1e-5,
   1e-7 on a small neural vector field (counted with ``torch.autograd.graph.saved_tensors_hooks``).

Both libraries get the same vector-field module and the same inputs; a counting wrapper measures NFE the same
way for both. torchdiffeq is optional (``pip install -e '.[bench]'``); without it the script prints our figures
alone and says so.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from node_experiments.models.mnist import ConvODEFunc
from node_experiments.ode import odeint, odeint_adjoint
from node_experiments.training.meters import SavedTensorBytes

try:
    import torchdiffeq
except ImportError:  # the optional `bench` extra
    torchdiffeq = None


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
    if torchdiffeq is not None:
        libs.append(("torchdiffeq", torchdiffeq.odeint, torchdiffeq.odeint_adjoint))
    return libs


def median_time(run: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def interleaved(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each case, the cases run round-robin so machine load affects all alike."""
    for run in cases.values():  # warm-up
        run()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            samples[name] += median_time(run, 1)
    return {name: statistics.median(values) for name, values in samples.items()}


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


def compute_bound(repeats: int) -> list[dict]:
    torch.manual_seed(0)
    field = Counted(ConvODEFunc(64))
    x = torch.randn(128, 64, 6, 6)
    t = torch.tensor([0.0, 1.0])
    calls: dict[str, tuple[int, int]] = {}

    def case(name, adjoint_fn, seminorm):
        options = {"norm": "seminorm"} if seminorm else {}

        def run():
            field.zero_grad(set_to_none=True)
            h = x.clone().requires_grad_(True)
            field.calls = 0
            out = adjoint_fn(field, h, t, rtol=1e-3, atol=1e-3, method="dopri5", adjoint_options=options)
            forward_calls = field.calls
            out[-1].square().mean().backward()
            calls[key] = (forward_calls, field.calls - forward_calls)

        key = f"{name}{' + seminorm' if seminorm else ''}"
        return key, run

    cases = dict(case(name, adj, semi) for semi in (False, True) for name, _, adj in libraries())
    times = interleaved(cases, repeats)
    rows = []
    for key in cases:
        library, _, variant = key.partition(" + ")
        nfe_f, nfe_b = calls[key]
        rows.append(
            dict(
                case=f"3. compute-bound: ODE-Net block, adjoint{' + seminorm' if variant else ''}",
                library=library, time_s=times[key], nfe=f"{nfe_f} fwd / {nfe_b} bwd",
            )
        )  # fmt: skip
    return rows


def memory() -> list[dict]:
    torch.manual_seed(0)
    field = SmallField()
    y0 = torch.randn(256, 2)
    t = torch.tensor([0.0, 5.0])
    rows = []
    params = list(field.parameters())
    for label, fn in (("odeint (direct backprop)", odeint), ("odeint_adjoint", odeint_adjoint)):
        for rtol in (1e-3, 1e-5, 1e-7):
            counted = Counted(field)
            with SavedTensorBytes(exclude=params) as saved:
                fn(counted, y0.clone().requires_grad_(True), t, rtol=rtol, atol=rtol * 1e-2, method="dopri5")
            rows.append(
                dict(case=f"4. memory: {label}", library="node-experiments", rtol=rtol, nfe=counted.calls, saved_bytes=saved.bytes)
            )
    return rows


def print_table(rows: list[dict]) -> None:
    columns = ["case", "library", "rtol", "time_s", "nfe", "max_error", "saved_bytes"]
    columns = [c for c in columns if any(c in row for row in rows)]

    def fmt(value):
        if isinstance(value, float):
            return f"{value:.3g}" if value < 1e-2 or value >= 1e4 else f"{value:.4f}".rstrip("0").rstrip(".")
        return "" if value is None else str(value)

    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(fmt(row.get(c)) for c in columns) + " |")


def ratios(rows: list[dict]) -> None:
    """Print our speed-up over torchdiffeq for each timed case."""
    by_case: dict[str, dict[str, dict]] = {}
    for row in rows:
        if "time_s" in row:
            by_case.setdefault(row["case"], {})[row["library"]] = row
    for case, libs in by_case.items():
        if "torchdiffeq" in libs:
            speedup = libs["torchdiffeq"]["time_s"] / libs["node-experiments"]["time_s"]
            print(f"- {case}: {speedup:.2f}x faster than torchdiffeq")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="loop,batched,compute,memory")
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    if torchdiffeq is None:
        print("torchdiffeq is not installed (pip install -e '.[bench]'): printing node-experiments' figures alone.\n")
    wanted = set(args.only.split(","))
    rows: list[dict] = []
    if "loop" in wanted:
        rows += loop_bound(args.repeats)
    if "batched" in wanted:
        rows += batched(args.repeats)
    if "compute" in wanted:
        rows += compute_bound(max(1, args.repeats // 2))
    if "memory" in wanted:
        rows += memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; float32 unless stated\n")
    print_table(rows)
    print()
    ratios(rows)


if __name__ == "__main__":
    main()
