"""``node-run experiment=NAME [key=value ...]``: the command-line entry point, and nothing else.

Composes the Hydra config (``node_experiments/configs``), checks it, and hands it to the shared trainer, or, when
the experiment picks a ``study`` group (a measurement of a trained model, ``node_experiments.studies``), to that
study. A mistake the user can fix (no or unknown experiment, a bad config value, missing data, a checkpoint that
is not there) ends with a one-paragraph message on stderr and a non-zero exit status, without a stack trace; so
does a run that diverged or whose solve failed. A run stopped by a signal exits with 128 + the signal's number.
"""

from __future__ import annotations

import difflib
import re
import signal
import sys
from importlib.resources import files

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .errors import RunError

CONFIG_PACKAGE = "node_experiments.configs"
USAGE = "usage: node-run experiment=NAME [key=value ...]    (node-run -m experiment=A,B ... for a sweep)"
# Flags after which Hydra prints information instead of running, and ways to add configs we cannot list here.
_NO_CHECK_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc"}
_OTHER_CONFIG_SOURCES = ("--config-dir", "-cd", "--config-path", "-cp", "hydra.searchpath")


def available_experiments() -> list[str]:
    """The experiments there are: the files of the ``experiment`` config group."""
    folder = files(CONFIG_PACKAGE).joinpath("experiment")
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def experiment_problem(args: list[str]) -> str | None:
    """A message when the command line names no experiment or one that does not exist; None when it is fine.

    Only plain names (``experiment=a`` or a sweep ``experiment=a,b``) are checked; anything fancier (Hydra's
    ``glob(...)``, extra config folders, ``--help``) is left to Hydra, which reports its own errors.
    """
    if _NO_CHECK_FLAGS.intersection(args) or any(arg.startswith(_OTHER_CONFIG_SOURCES) for arg in args):
        return None
    experiments = available_experiments()
    listing = "The experiments are: " + ", ".join(experiments) + "."
    values = [arg.split("=", 1)[1] for arg in args if "=" in arg and arg.split("=", 1)[0].lstrip("+~") == "experiment"]
    if not values:
        return f"node-run: no experiment given. {listing}\n{USAGE}"
    for value in values:
        if not re.fullmatch(r"[\w\-]+(,[\w\-]+)*", value):
            continue
        for name in value.split(","):
            if name not in experiments:
                close = difflib.get_close_matches(name, experiments, n=1)
                hint = f" Did you mean experiment={close[0]}?" if close else ""
                return f"node-run: unknown experiment {name!r}.{hint} {listing}\n{USAGE}"
    return None


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_PACKAGE}", config_name="config")
def run(cfg: DictConfig) -> None:
    """One run: validate the settings, then train (or run the experiment's study); its folder is Hydra's output
    directory."""
    # Imported here, not at the top, so that a command line without a valid experiment is answered at once,
    # before torch loads.
    from .models import check_solver_config
    from .ode import SolverError
    from .studies import run_study
    from .training import train

    hydra_config = HydraConfig.get()
    choices = hydra_config.runtime.choices
    labels = {
        "experiment": choices.get("experiment"),
        **{group: choices.get(group) for group in ("task", "model", "data") if group in choices},
        "run_dir": hydra_config.runtime.output_dir,
    }
    if "solver" in cfg.get("model", {}):  # the settings the model solves with, overrides included
        labels["solver"] = OmegaConf.to_container(cfg.solver, resolve=True)
    try:
        if "solver" in cfg:
            check_solver_config(cfg.solver)
        if "study" in cfg:
            run_study(cfg, hydra_config.runtime.output_dir, labels)
        else:
            train(cfg, hydra_config.runtime.output_dir, labels)
    except (RunError, SolverError) as error:
        print(f"node-run: {error}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    """The ``node-run`` console script."""
    problem = experiment_problem(sys.argv[1:])
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(2)
    try:
        run()
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM / a preemption signal (training.signals)
        signum = getattr(interrupt, "signum", signal.SIGINT)
        print(f"node-run: stopped by {signal.Signals(signum).name} (the checkpoint written and how to continue are "
              "named above).", file=sys.stderr)  # fmt: skip
        sys.exit(128 + signum)


if __name__ == "__main__":
    main()
