"""User-facing errors of the experiment runner.

A ``RunError`` is a mistake the user can fix (a bad config value, missing data, a checkpoint that is not there).
``node-run`` prints its message alone, without a stack trace, and exits non-zero; so every message names the
value, what is wrong with it and the fix, in one paragraph.
"""


class RunError(Exception):
    """A problem with a run's configuration or inputs that the user can fix; the message says how."""


class ConfigError(RunError, ValueError):
    """A configuration value is invalid (for example ``solver.rtol=-1``)."""


class DataNotFoundError(RunError, FileNotFoundError):
    """A data set is missing on disk and could not be downloaded."""


def retired_adjoint_setting(value: object, key: str = "solver") -> ConfigError:
    """The error for ``solver.adjoint``, the boolean of earlier versions: ``solver.gradient`` names the strategy."""
    setting = f"{key}.adjoint" if value is None else f"{key}.adjoint={value}"
    return ConfigError(
        f"{setting} is no longer a setting: how gradients are computed is chosen by "
        f"{key}.gradient=adjoint|backprop|checkpoint ({key}.adjoint=true was {key}.gradient=adjoint, false was "
        f"{key}.gradient=backprop; checkpoint gives backprop's gradients for one state per solver step of memory). "
        f"Replace it with {key}.gradient=NAME."
    )
