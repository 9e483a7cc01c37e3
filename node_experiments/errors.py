"""User-facing errors of the experiment runner.

A ``RunError`` is a mistake the user can fix (a bad config value, missing data, a checkpoint that is not there),
or a run that stopped for a reason the user must act on (it diverged, a solve could not finish). ``node-run``
prints its message alone, without a stack trace, and exits non-zero; so every message names the value, what is
wrong with it and the fix, in one paragraph.
"""


class RunError(Exception):
    """A problem with a run's configuration or inputs that the user can fix; the message says how."""


class ConfigError(RunError, ValueError):
    """A configuration value is invalid (for example ``solver.rtol=-1``)."""


class DataNotFoundError(RunError, FileNotFoundError):
    """A data set is missing on disk and could not be downloaded."""


class DataFormatError(RunError, ValueError):
    """A data file is there but damaged or of another format (a bad IDX header, a label out of range)."""


class CheckpointError(ConfigError):
    """The checkpoint a config key points at cannot be read (empty, truncated, or not a checkpoint of node-run)."""


class RunFolderError(RunError):
    """The run folder cannot be used: not writable, held by a live run, or holding another run's results."""


class TrainingStopped(RunError):
    """Training stopped before its last epoch for a reason the message gives; ``status`` goes into summary.json."""

    status = "failed"


class DivergedError(TrainingStopped):
    """A loss, gradient or weight became NaN or infinite; the step that produced it was not checkpointed."""

    status = "diverged"


class SolveFailedError(TrainingStopped):
    """A solve of the model's ODE could not finish (step budget spent, step size underflow, non-finite field)."""

    status = "solver_failed"


def retired_adjoint_setting(value: object, key: str = "solver") -> ConfigError:
    """The error for ``solver.adjoint``, the boolean of earlier versions: ``solver.gradient`` names the strategy."""
    setting = f"{key}.adjoint" if value is None else f"{key}.adjoint={value}"
    return ConfigError(
        f"{setting} is no longer a setting: how gradients are computed is chosen by "
        f"{key}.gradient=adjoint|backprop|checkpoint ({key}.adjoint=true was {key}.gradient=adjoint, false was "
        f"{key}.gradient=backprop; checkpoint gives backprop's gradients for one state per solver step of memory). "
        f"Replace it with {key}.gradient=NAME."
    )


class ReportError(RunError):
    """A report cannot be built from what it was given (a missing folder, no finished run of its kind).

    ``exit_status`` is what ``node-report`` exits with: 2 for a command-line mistake, 1 for nothing to report.
    """

    def __init__(self, message: str, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status
