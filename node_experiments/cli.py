"""``node-run experiment=NAME [key=value ...]``: the command-line entry point, and nothing else.

Checks the command line (``command_line``), composes the Hydra config (``node_experiments/configs``), checks every
value of it (``validation``), and hands it to the shared trainer, or, when the experiment picks a ``study`` group
(a measurement of a trained model, ``node_experiments.studies``), to that study. A mistake the user can fix (no
or unknown experiment or key, a bad config value, missing data, a checkpoint that is not there) ends with a
one-paragraph message on stderr and a non-zero exit status, without a stack trace; in a sweep it fails that job
alone, and node-run names the failed jobs at the end (``sweeps``). A run that diverged or whose solve failed ends
the same way; a run stopped by a signal exits with 128 + the signal's number.
"""

from __future__ import annotations

import logging
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .command_line import CONFIG_PACKAGE, command_line_problem, hydra_arguments
from .errors import RunError
from .sweeps import JobFailed, failed_jobs_report

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_PACKAGE}", config_name="config")
def run(cfg: DictConfig) -> None:
    """One run: validate the settings, then train (or run the experiment's study); its folder is Hydra's output
    directory."""
    from .validation import validate  # torch loads only after the plain checks (seconds on a busy machine)

    hydra_config = HydraConfig.get()
    in_sweep = hydra_config.mode == RunMode.MULTIRUN
    try:
        validate(cfg)
        from .studies import run_study
        from .training import train
        from .training.run_record import write_record

        choices = hydra_config.runtime.choices
        labels = {
            "experiment": choices.get("experiment"),
            **{group: choices.get(group) for group in ("task", "model", "data") if group in choices},
            "run_dir": hydra_config.runtime.output_dir,
        }
        if "solver" in cfg.get("model", {}):  # the settings the model solves with, overrides included
            labels["solver"] = OmegaConf.to_container(cfg.solver, resolve=True)
        run_dir = hydra_config.runtime.output_dir
        if "study" in cfg:
            write_record(run_dir, cfg)
            run_study(cfg, run_dir, labels)
        else:  # the record is written once the run holds its folder and has passed every check
            train(cfg, run_dir, labels, on_start=lambda: write_record(run_dir, cfg))
    except Exception as error:
        if not _user_mistake(error):
            if in_sweep:  # the job fails alone; its log keeps the trace
                log.exception("node-run: this job failed:")
            raise
        if not in_sweep:
            print(f"node-run: {error}", file=sys.stderr)
            sys.exit(1)
        log.error("node-run: %s", error)
        raise JobFailed(f"node-run: {error}") from None


def _user_mistake(error: BaseException) -> bool:
    """A ``RunError``, or one of the solver's ``SolverError``s (found through the loaded solver: importing it here
    would load torch before the config is checked)."""
    solver = sys.modules.get("node_experiments.ode")
    return isinstance(error, RunError) or (solver is not None and isinstance(error, solver.SolverError))


def main() -> None:
    """The ``node-run`` console script."""
    argv = sys.argv[1:]
    problem = command_line_problem(argv)
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(2)
    sys.argv[1:] = hydra_arguments(argv)
    try:
        run()
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM / a preemption signal (training.signals)
        signum = getattr(interrupt, "signum", signal.SIGINT)
        print(f"node-run: stopped by {signal.Signals(signum).name} (the checkpoint written and how to continue are "
              "named above).", file=sys.stderr)  # fmt: skip
        sys.exit(128 + signum)
    except SystemExit:  # how Hydra ends after printing an error: in a sweep, the first failed job's
        _exit_if_jobs_failed()
        raise
    _exit_if_jobs_failed()


def _exit_if_jobs_failed() -> None:
    report = failed_jobs_report()
    if report:
        print(report, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
