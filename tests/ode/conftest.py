"""pytest setup for the ODE solver tests: shared problems live in ``ode_problems.py`` (next to this file).

The suite runs small problems on the CPU; one intra-op thread is faster for such tensors than several and keeps
the suite polite on a shared machine.
"""

import os
import sys

import torch

# Make ``import ode_problems`` work under every pytest import mode (prepend does this already; importlib doesn't).
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

torch.set_num_threads(1)
