"""Run torchdiffeq's own test suite with this project's solver in torchdiffeq's place, and count the outcomes.

    python scripts/torchdiffeq_suite.py [--tests DIR] [--reference] [--verbose]

torchdiffeq's tests (``tests/*.py`` of its GitHub repository; its PyPI sdist does not ship them) call
``torchdiffeq.odeint``, ``odeint_adjoint`` and ``odeint_event``. This script imports them with a stand-in
``torchdiffeq`` module whose three functions are ``node_experiments.ode``'s, restricted to the explicit
Runge-Kutta methods this solver offers (the method lists of the suite's ``problems.py`` lose torchdiffeq's Adams
methods and ``scipy_solver``), runs every test with ``unittest``, and prints how many subtests passed and failed.
Each failure is then matched against the differences ``docs/solver.md`` documents (its compatibility table); any
failure that matches none is listed and makes the exit status 1.

Where the tests come from: ``--tests DIR`` (a folder holding torchdiffeq's ``problems.py``, ``odeint_tests.py``,
...), else ``$TORCHDIFFEQ_TESTS``, else a shallow ``git clone`` of torchdiffeq at tag v0.2.5 into
``~/.cache/node-experiments/torchdiffeq-v0.2.5`` (kept for the next run). Nothing of torchdiffeq is copied into
this repository.

``--reference`` runs the same tests on torchdiffeq itself (``pip install -e '.[bench]'``), restricted to the same
methods, to show which failures are the suite's own (torchdiffeq 0.2.5 fails a few of its tests on current torch).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import time
import types
import unittest
import warnings
from dataclasses import dataclass
from pathlib import Path

TEST_MODULES = ("api_tests", "event_tests", "gradient_tests", "norm_tests", "odeint_tests")
REPOSITORY = "https://github.com/rtqichen/torchdiffeq"
TAG = "v0.2.5"
CACHE = Path.home() / ".cache" / "node-experiments" / f"torchdiffeq-{TAG}"
# torchdiffeq's methods that are not explicit Runge-Kutta methods: refused here (docs/solver.md, "Methods").
NOT_OFFERED = ("explicit_adams", "implicit_adams", "fixed_adams", "scipy_solver")


@dataclass(frozen=True)
class Difference:
    """A documented, deliberate difference from torchdiffeq, recognised in a failed test by its name and error."""

    test: str  # a regular expression matched against "module.Class.method"
    error: str  # a regular expression searched in the formatted error
    why: str  # the row of docs/solver.md's compatibility table it comes from


DOCUMENTED = (
    Difference(r".", r"scipy_solver.*not supported",
               "method='scipy_solver' is not supported (a wrapper of scipy's solve_ivp)"),
    Difference(r".", r"(explicit|implicit|fixed)_adams.*not supported",
               "torchdiffeq's Adams methods are not supported (multistep methods)"),
    Difference(r"norm_tests\.TestNorms\.test_adjoint_norm", r"AttributeError: .*(adjoint_options|next_functions)",
               "the test reads adjoint_options off torchdiffeq's private autograd node (xs.grad_fn)"),
    Difference(r"norm_tests\.TestNorms\.test_adjoint_norm", r"ValueError: not enough values to unpack",
               "a callable norm in adjoint_options receives (y parts, a parts, parameter parts): no time part"),
    Difference(r"event_tests\.TestEventHandling\.test_adjoint", r"does not require grad",
               "odeint_adjoint's event time does not require grad (torchdiffeq's does, and drops its gradient)"),
    Difference(r".", r"has dtype torch\.complex\d+, which is not floating point",
               "complex states are not supported"),
)  # fmt: skip


@dataclass
class Outcome:
    test: str  # module.Class.method
    params: str  # the subtest's parameters, "" for a test without subtests
    error: str | None  # the formatted failure, None when it passed

    @property
    def name(self) -> str:
        return f"{self.test} {self.params}".strip()

    def difference(self) -> Difference | None:
        return next((d for d in DOCUMENTED if re.search(d.test, self.test) and re.search(d.error, self.error or "")),
                    None)  # fmt: skip


class Recorder(unittest.TestResult):
    """Keeps every test's and subtest's outcome (unittest's own result keeps failures only)."""

    def __init__(self):
        super().__init__()
        self.outcomes: list[Outcome] = []
        self._had_subtests: set[str] = set()

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        self._had_subtests.add(test.id())
        params = ", ".join(f"{k}={v}" for k, v in subtest.params.items())
        self.outcomes.append(Outcome(test.id(), params, None if err is None else self._exc_info_to_string(err, test)))

    def addSuccess(self, test):
        super().addSuccess(test)
        if test.id() not in self._had_subtests:
            self.outcomes.append(Outcome(test.id(), "", None))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.outcomes.append(Outcome(test.id(), "(outside subtests)", self._exc_info_to_string(err, test)))

    addError = addFailure


def locate_tests(folder: str | None) -> Path:
    """The folder of torchdiffeq's tests: given, in $TORCHDIFFEQ_TESTS, cached, or cloned into the cache."""
    for candidate in (folder, os.environ.get("TORCHDIFFEQ_TESTS")):
        if candidate:
            path = Path(candidate).expanduser()
            path = path / "tests" if (path / "tests" / "problems.py").exists() else path
            if not (path / "problems.py").exists():
                sys.exit(f"{path} holds no problems.py: pass the tests/ folder of a torchdiffeq {TAG} checkout "
                         f"(git clone --branch {TAG} {REPOSITORY}).")  # fmt: skip
            return path
    if not (CACHE / "tests" / "problems.py").exists():
        print(f"cloning torchdiffeq {TAG} into {CACHE} (its tests are not in the PyPI package) ...", flush=True)
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        clone = ["git", "clone", "--quiet", "--depth", "1", "--branch", TAG, REPOSITORY, str(CACHE)]
        done = subprocess.run(clone, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"could not clone {REPOSITORY} ({done.stderr.strip()}). Clone it elsewhere and pass its tests "
                     f"folder: python scripts/torchdiffeq_suite.py --tests /path/to/torchdiffeq/tests (or set "
                     f"TORCHDIFFEQ_TESTS).")  # fmt: skip
    return CACHE / "tests"


def stand_in() -> types.ModuleType:
    """A module named ``torchdiffeq`` whose solve functions are this project's."""
    from node_experiments import ode

    module = types.ModuleType("torchdiffeq")
    module.odeint, module.odeint_adjoint, module.odeint_event = ode.odeint, ode.odeint_adjoint, ode.odeint_event
    return module


def load_suite(tests: Path, library: types.ModuleType) -> unittest.TestSuite:
    """torchdiffeq's test modules, importing ``library`` as ``torchdiffeq``, with explicit Runge-Kutta methods only."""
    sys.modules["torchdiffeq"] = library
    sys.path.insert(0, str(tests))
    problems = importlib.import_module("problems")
    for name in ("METHODS", "FIXED_METHODS", "ADAPTIVE_METHODS", "ADAMS_METHODS", "SCIPY_METHODS"):
        if hasattr(problems, name):
            setattr(problems, name, tuple(m for m in getattr(problems, name) if m not in NOT_OFFERED))
    loader = unittest.TestLoader()
    return unittest.TestSuite(loader.loadTestsFromModule(importlib.import_module(name)) for name in TEST_MODULES)


def report(outcomes: list[Outcome], label: str, seconds: float, verbose: bool) -> int:
    """Print the counts; return the number of failures no documented difference explains."""
    failed = [o for o in outcomes if o.error is not None]
    documented = [o for o in failed if o.difference() is not None]
    unexplained = [o for o in failed if o.difference() is None]
    print(f"\n{label}: {len(outcomes)} (sub)tests in {seconds:.0f} s: {len(outcomes) - len(failed)} passed, "
          f"{len(failed)} failed ({len(documented)} documented differences, {len(unexplained)} unexplained)")  # fmt: skip
    by_reason: dict[str, list[Outcome]] = {}
    for outcome in documented:
        by_reason.setdefault(outcome.difference().why, []).append(outcome)
    for why, group in by_reason.items():
        print(f"  documented ({len(group)}): {why}")
        if verbose:
            for outcome in group:
                print(f"      {outcome.name}")
    for outcome in unexplained:
        last = outcome.error.strip().splitlines()[-1]
        print(f"  UNEXPLAINED: {outcome.name}: {last}")
        if verbose:
            print("      " + outcome.error.replace("\n", "\n      "))
    return len(unexplained)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", default=None, help="torchdiffeq's tests/ folder (else $TORCHDIFFEQ_TESTS, or a clone)")
    parser.add_argument("--reference", action="store_true", help="run torchdiffeq itself instead of this solver")
    parser.add_argument("--verbose", action="store_true", help="name every failed subtest and print its error")
    args = parser.parse_args()
    tests = locate_tests(args.tests)
    if args.reference:
        library, label = importlib.import_module("torchdiffeq"), "torchdiffeq"
    else:
        library, label = stand_in(), "node_experiments.ode as torchdiffeq"
    suite = load_suite(tests, library)
    result = Recorder()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suite.run(result)
    unexplained = report(result.outcomes, label, time.perf_counter() - start, args.verbose)
    sys.exit(1 if unexplained and not args.reference else 0)


if __name__ == "__main__":
    main()
