"""A bouncing ball with a learned coefficient of restitution: gradients through event times.

    python scripts/bouncing_ball.py [--bounces 6] [--iterations 20] [--gradient backprop|adjoint|checkpoint]

The ball falls from ``h0`` under gravity; at each impact (the event: height = 0) its velocity is reversed and
scaled by the coefficient of restitution ``e``. The impact times are observed for the true ``e = 0.8``; starting
from ``e = 0.5``, minimising the squared error of the simulated impact times recovers it. Each flight is
one ``odeint_event`` solve, so the gradient reaches ``e`` through the event times themselves (the implicit function
theorem at each impact; Chen, Amos & Nickel, ICLR 2021), as in torchdiffeq's bouncing-ball example, here with this
project's solver and any of its gradient strategies.

The impact times have a closed form, ``t_1 = (v0 + s) / g`` and ``t_{k+1} = t_k + 2 e^k s / g`` with the impact speed
``s = sqrt(v0^2 + 2 g h0)``: the script checks its first gradient against that formula's derivative before it
trains, and prints the learned ``e`` beside the true one.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from node_experiments.ode import GRADIENTS, odeint_event

GRAVITY, HEIGHT, VELOCITY = 9.81, 10.0, 0.0
TRUE_RESTITUTION, START_RESTITUTION = 0.8, 0.5
# After an impact the ball restarts a hair above the ground, so that the event function (the height) is not zero
# at the start of the next flight (a zero there is an event at the start, as in torchdiffeq).
LIFT = 1e-9


class Flight(nn.Module):
    """Free fall: d(height)/dt = velocity, d(velocity)/dt = -g."""

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        height, velocity = state
        return velocity, torch.full_like(height, -GRAVITY)


def ground(t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return state[0]


def impact_times(restitution: torch.Tensor, bounces: int, gradient: str) -> torch.Tensor:
    """The times of the first ``bounces`` impacts, differentiable with respect to ``restitution``."""
    height = torch.tensor(HEIGHT, dtype=torch.float64)
    velocity = torch.tensor(VELOCITY, dtype=torch.float64)
    clock, times = torch.tensor(0.0, dtype=torch.float64), []
    for _ in range(bounces):
        # Each flight starts its own clock at 0 (the motion does not depend on t): the impact is at clock + flight.
        flight, solution = odeint_event(Flight(), (height, velocity), torch.tensor(0.0, dtype=torch.float64),
                                        event_fn=ground, odeint_interface=GRADIENTS[gradient], rtol=1e-9,
                                        atol=1e-11)  # fmt: skip
        clock = clock + flight
        times.append(clock)
        height = torch.full_like(height, LIFT)
        velocity = -restitution * solution[1][-1]
    return torch.stack(times)


def exact_impact_times(restitution: float, bounces: int) -> list[float]:
    speed = math.sqrt(VELOCITY**2 + 2 * GRAVITY * HEIGHT)
    times = [(VELOCITY + speed) / GRAVITY]
    for k in range(1, bounces):
        times.append(times[-1] + 2 * restitution**k * speed / GRAVITY)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bounces", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=20, help="L-BFGS iterations at most")
    parser.add_argument("--gradient", choices=list(GRADIENTS), default="backprop")
    args = parser.parse_args()

    observed = torch.tensor(exact_impact_times(TRUE_RESTITUTION, args.bounces), dtype=torch.float64)
    restitution = torch.tensor(START_RESTITUTION, dtype=torch.float64, requires_grad=True)

    simulated = impact_times(restitution, args.bounces, args.gradient)
    (grad,) = torch.autograd.grad(simulated[-1], restitution)
    step = 1e-6
    exact = (exact_impact_times(START_RESTITUTION + step, args.bounces)[-1]
             - exact_impact_times(START_RESTITUTION - step, args.bounces)[-1]) / (2 * step)  # fmt: skip
    print(f"d t_{args.bounces} / d e at e = {START_RESTITUTION}: {float(grad):.9f} through the solver's event times, "
          f"{exact:.9f} from the closed form (relative difference {abs(float(grad) / exact - 1):.1e})")  # fmt: skip
    print(f"impact times, e = {START_RESTITUTION}: solver {[round(v, 6) for v in simulated.tolist()]}, closed form "
          f"{[round(v, 6) for v in exact_impact_times(START_RESTITUTION, args.bounces)]}\n")  # fmt: skip

    # L-BFGS (a quasi-Newton method on the gradients) rather than plain gradient descent: the impact times are
    # strongly nonlinear in e (the k-th flight scales as e^k), where a fixed learning rate oscillates.
    optimizer = torch.optim.LBFGS([restitution], lr=1.0, max_iter=args.iterations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-12, tolerance_change=1e-15)  # fmt: skip
    print("| evaluation | e | loss (mean squared error of the impact times, s^2) |\n|---|---|---|")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (impact_times(restitution, args.bounces, args.gradient) - observed).square().mean()
        print(f"| {closure.evaluations} | {restitution.item():.9f} | {loss.item():.3e} |")
        closure.evaluations += 1
        loss.backward()
        return loss

    closure.evaluations = 0
    optimizer.step(closure)
    print(f"\nlearned e = {restitution.item():.9f}, true e = {TRUE_RESTITUTION} (gradient strategy: {args.gradient})")


if __name__ == "__main__":
    main()
