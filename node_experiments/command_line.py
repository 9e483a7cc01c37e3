"""What ``node-run`` checks on its command line before Hydra composes a config, and how it passes sweeps on.

- ``command_line_problem(argv)``: a message for a command line that cannot run: no experiment or an unknown one
  (with the list), ``solver.adjoint`` (replaced by ``solver.gradient``), a setting Hydra cannot read (``key``
  without ``=VALUE``), a launcher whose plugin is not installed (with the extra to install), a key that the
  experiment's config does not have (Hydra's message plus the closest real key, or, for an argument of the
  optimizer or scheduler class that its config does not list, the ``+key=value`` that adds it or the option of
  the group that takes it). ``None`` when it can run; ``node-run`` prints the message and exits with status 2.
- ``hydra_arguments(argv)``: the command line as Hydra gets it. In a sweep over config groups
  (``-m experiment=spiral_latent_ode,spiral_rnn``) Hydra first composes one sweep-level config from the *default*
  groups, the swept ones left out, and applies the single-valued overrides to it: a key only the swept
  experiments have (``data.n_obs=30``) fails there with "Key 'n_obs' is not in struct", while a swept value
  (``data.n_obs=30,50``) is applied only to each job's config and runs. Once ``key_problem`` has checked that
  every job's config has the key, such single values are passed as ``++key=value``, which the sweep-level config
  accepts and each job applies to the key it has.

The command line and the composed configs are read as Hydra reads them, through ``hydra_adapter`` (the one module
that touches Hydra's and OmegaConf's non-public names).
"""

from __future__ import annotations

import difflib
import importlib.util
import itertools
import re
from collections.abc import Iterator, Sequence
from importlib.resources import files

from .errors import retired_adjoint_setting
from .hydra_adapter import command_line_args, config_node, dotted_keys, override_parser, raw_value

CONFIG_PACKAGE = "node_experiments.configs"
USAGE = "usage: node-run experiment=NAME [key=value ...]    (node-run -m experiment=A,B ... for a sweep)"
# Flags after which Hydra prints information instead of running, and ways to add configs we cannot list here.
_NO_CHECK_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc"}
_OTHER_CONFIG_SOURCES = ("--config-dir", "-cd", "--config-path", "-cp", "hydra.searchpath")
# hydra/launcher choices -> (the Hydra plugin module, the pip package)
LAUNCHER_PLUGINS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
}
MAX_CHECKED_JOBS = 64  # a sweep over more config-group combinations than this is left to Hydra's own checks


def available_experiments() -> list[str]:
    """The experiments there are: the files of the ``experiment`` config group (its ``base/`` files are parts)."""
    folder = files(CONFIG_PACKAGE).joinpath("experiment")
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def command_line_problem(argv: Sequence[str]) -> str | None:
    """A one-paragraph message when ``node-run ARGV`` cannot run; None when Hydra should take it from here.

    A command line that asks Hydra for information (``--help``, ``--info``) or adds config folders we cannot see is
    left to Hydra, which reports its own errors.
    """
    if _NO_CHECK_FLAGS.intersection(argv) or any(arg.startswith(_OTHER_CONFIG_SOURCES) for arg in argv):
        return None
    return (
        experiment_problem(argv)
        or retired_setting_problem(argv)
        or mode_problem(argv)
        or syntax_problem(argv)
        or launcher_problem(argv)
        or key_problem(argv)
    )


def experiment_problem(args: Sequence[str]) -> str | None:
    """A message when the command line names no experiment or one that does not exist; None when it is fine.

    Only plain names (``experiment=a`` or a sweep ``experiment=a,b``) are checked; Hydra's ``glob(...)`` and the
    like are left to Hydra. The files under ``experiment/base/`` are parts of experiments, not experiments.
    """
    experiments = available_experiments()
    listing = "The experiments are: " + ", ".join(experiments) + "."
    values = [arg.split("=", 1)[1] for arg in args if "=" in arg and arg.split("=", 1)[0].lstrip("+~") == "experiment"]
    if not values:
        return f"node-run: no experiment given. {listing}\n{USAGE}"
    for value in values:
        if not re.fullmatch(r"[\w\-/]+(,[\w\-/]+)*", value):
            continue
        for name in value.split(","):
            if name not in experiments:
                close = difflib.get_close_matches(name, experiments, n=1)
                hint = f" Did you mean experiment={close[0]}?" if close else ""
                return f"node-run: unknown experiment {name!r}.{hint} {listing}\n{USAGE}"
    return None


def retired_setting_problem(args: Sequence[str]) -> str | None:
    """A message when the command line sets ``solver.adjoint``, replaced by ``solver.gradient``; else None."""
    for arg in args:
        match = re.fullmatch(r"[+~]*solver\.adjoint(?:=(.*))?", arg)
        if match:
            return f"node-run: {retired_adjoint_setting(match.group(1))}\n{USAGE}"
    return None


def mode_problem(argv: Sequence[str]) -> str | None:
    """A message when the command line asks for two of Hydra's modes at once (it raises a bare ValueError)."""
    args = command_line_args(argv)
    if args is None:
        return None
    modes = [flag for flag, on in (("--run", args.run), ("--multirun", args.multirun), ("--cfg", args.cfg),
                                   ("--info", args.info), ("--shell-completion", args.shell_completion)) if on]  # fmt: skip
    if len(modes) > 1:
        return (
            f"node-run: {' and '.join(modes)} cannot be combined: Hydra runs one, sweeps, or prints one config. "
            "To see a sweep job's config, give that job's values without -m, e.g. node-run experiment=A --cfg job."
        )
    return None


def syntax_problem(argv: Sequence[str]) -> str | None:
    """A message for a setting Hydra's override grammar rejects (``trainer.max_epochs`` without ``=VALUE``, an
    unclosed bracket) or several values without ``-m``, naming it and the form that works; None when every setting
    parses."""
    from hydra.errors import HydraException

    args = command_line_args(argv)
    if args is None:
        return None
    parser = override_parser()
    parsed, broken = [], []
    for arg in args.overrides:
        try:
            parsed.append(parser.parse_override(arg))
        except HydraException as error:
            broken.append((arg, str(error).strip().splitlines()[-1].strip() if str(error).strip() else ""))
    multirun = args.multirun or any(o.key_or_group == "hydra.mode" and o.value() == "MULTIRUN" for o in parsed)
    sweeps = not multirun and [o for o in parsed if o.is_sweep_override() and not o.is_hydra_override()]
    if not broken and sweeps:
        value = sweeps[0].input_line
        return (
            f"node-run: {value} gives several values, which only a sweep runs: add -m (node-run -m ... {value}), "
            f"give one value, or quote a text that holds commas ({value.split('=', 1)[0]}='...').\n{USAGE}"
        )
    if not broken:
        return None
    arg, reason = broken[0]
    if "=" not in arg:
        key = arg.lstrip("+")
        value = _current_value(parsed, key)
        example = f"{key}={value} (its value now)" if value is not None else f"{key}=VALUE"
        return (
            f"node-run: the setting {arg!r} has no value: settings are given as key=value, e.g. {example}; "
            f"~{key} deletes a key, +{key}=VALUE adds one.\n{USAGE}"
        )
    return (
        f"node-run: the setting {arg!r} cannot be read ({reason}): settings are key=value, lists in brackets "
        f"(key=[1,2]), text with spaces or special characters in quotes (key='a b'); see "
        f"https://hydra.cc/docs/advanced/override_grammar/basic/.\n{USAGE}"
    )


def _current_value(overrides: Sequence, key: str) -> str | None:
    """``key``'s value in the config that ``overrides`` (parsed) compose, as written on a command line; None when
    it has no such plain value or the config does not compose."""
    from hydra import compose, initialize_config_module
    from omegaconf import DictConfig, ListConfig

    choices = next(_group_choices(overrides), ([], ""))[0]
    try:
        with initialize_config_module(CONFIG_PACKAGE, version_base="1.3"):
            node = config_node(compose("config", overrides=choices), key)
    except Exception:  # a config that does not compose: Hydra says why once the setting is fixed
        return None
    if node is None or isinstance(node, (DictConfig, ListConfig)):
        return None
    value = raw_value(node)
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def launcher_problem(args: Sequence[str]) -> str | None:
    """A message when ``hydra/launcher=joblib|slurm`` names a launcher whose Hydra plugin is not installed."""
    for arg in args:
        key, _, value = arg.partition("=")
        if key.lstrip("+") == "hydra/launcher" and value in LAUNCHER_PLUGINS:
            module, package = LAUNCHER_PLUGINS[value]
            if importlib.util.find_spec(module.split(".")[0]) is None or not _module_exists(module):
                return (
                    f"node-run: hydra/launcher={value} needs Hydra's {package} plugin, which is not installed. "
                    f"Install the project's cluster extra, pip install 'node-experiments[cluster]' (or pip install "
                    f"{package}), or sweep with the default launcher (leave hydra/launcher out)."
                )
    return None


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def key_problem(argv: Sequence[str]) -> str | None:
    """A message when a ``key=value`` override names a key that the config of the experiment (of each job of a
    sweep over config groups) does not have, with the real key it resembles, or when a job's config does not compose
    (``model=foo``, ``+model.hidden=3`` for a key that is there): Hydra's message in one paragraph. None when every
    job composes and has every key."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    overrides, _ = parsed
    values = [o for o in overrides if _is_plain_value(o)]
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    jobs = list(itertools.islice(_group_choices(overrides), MAX_CHECKED_JOBS + 1))
    if len(jobs) > MAX_CHECKED_JOBS:
        return None
    # One composition per job: which keys a job's config has follows from its whole defaults list (an experiment
    # picks groups and adds keys), which only composing it tells; the sweep-level config Hydra composes first is
    # made of the default groups (module docstring), so no single composition can answer for every job.
    lacking: dict[str, list[str]] = {o.key_or_group: [] for o in values}
    first = None
    with initialize_config_module(CONFIG_PACKAGE, version_base="1.3"):
        for job, label in jobs:
            try:
                cfg = compose("config", overrides=job)
            except (HydraException, OmegaConfBaseException, ValueError) as error:
                return f"node-run: {_one_paragraph(str(error))} (in the config of {label}).\n{USAGE}"
            first = first if first is not None else cfg
            for key in lacking:
                if config_node(cfg, key) is None:
                    lacking[key].append(label)
    for override in values:
        key = override.key_or_group
        if not lacking[key]:
            continue
        value = override.input_line.split("=", 1)[1]
        if len(lacking[key]) < len(jobs):
            having = [label for _, label in jobs if label not in lacking[key]]
            return (
                f"node-run: Could not override '{key}' in every job of the sweep: the config of "
                f"{', '.join(lacking[key])} has no such key (that of {', '.join(having)} has). Sweep the jobs that "
                "have it on their own."
            )
        argument = _argument_hint(first, key, value)
        if argument:
            return f"node-run: {key}={value}: {argument}"
        close = _closest_key(first, key)
        hint = f" Did you mean {close}={value}?" if close else ""
        group = key.split(".")[0]
        missing = f"no {group} group" if config_node(first, group) is None else f"no key {key}"
        return (
            f"node-run: Could not override '{key}': Key '{key.rsplit('.', 1)[-1]}' is not in struct (the config of "
            f"{lacking[key][0]} has {missing}).{hint} To add a new key instead, use +{key}={value}."
        )
    return None


def _one_paragraph(message: str) -> str:
    """Hydra's multi-line message as one paragraph: its lines as sentences, a list after a line ending in ":"
    joined with commas, the config search path (Hydra's internals) left out."""
    lines = [line.strip() for line in message.split("Config search path")[0].splitlines() if line.strip()]
    text, listing = "", False
    for line in lines:
        if text.endswith(":") or listing and not line.endswith((".", ":")):
            text += (", " if listing else " ") + line
            listing = True
        else:
            text += ("" if not text else " " if text.endswith((".", "?")) else ". ") + line
            listing = False
    return text.rstrip(".")


def hydra_arguments(argv: Sequence[str]) -> list[str]:
    """``argv`` for Hydra: in a multirun that sweeps a config group, single values become ``++key=value`` (see the
    module docstring); everything else is passed unchanged. Call it after ``key_problem`` found no problem."""
    parsed = _parse(argv)
    if parsed is None:
        return list(argv)
    overrides, multirun = parsed
    sweeps_a_group = any(_is_group(o) and o.is_sweep_override() for o in overrides)
    if not (multirun and sweeps_a_group):
        return list(argv)
    plain = {o.input_line for o in overrides if _is_plain_value(o) and not o.is_sweep_override()}
    return [f"++{arg}" if arg in plain else arg for arg in argv]


# ------------------------------------------------------------------------------------------------ helpers
def _parse(argv: Sequence[str]) -> tuple[list, bool] | None:
    """Hydra's parse of the command line: (the overrides, whether it is a multirun); None when it does not parse."""
    from hydra.errors import HydraException

    args = command_line_args(argv)
    if args is None:
        return None
    try:
        overrides = override_parser().parse_overrides(args.overrides)
    except (HydraException, ValueError):
        return None
    multirun = bool(args.multirun) or any(o.key_or_group == "hydra.mode" and o.value() == "MULTIRUN" for o in overrides)
    return overrides, multirun


def _is_group(override) -> bool:
    """Whether the override picks a config group option (``data=fashion_mnist``), of ours or of Hydra."""
    key = override.key_or_group
    return key.startswith("hydra/") or files(CONFIG_PACKAGE).joinpath(key).is_dir()


def _is_plain_value(override) -> bool:
    """``key=value`` setting a key of the job's config (not ``+``/``++``/``~``, a group, a package or Hydra's)."""
    return not (
        override.is_hydra_override()
        or _is_group(override)
        or override.is_add()
        or override.is_force_add()
        or override.is_delete()
        or override.package is not None
    )


def _group_choices(overrides: Sequence) -> Iterator[tuple[list[str], str]]:
    """The overrides that decide a job's config groups (and keys added with +/++/~), with a label for messages: one
    per combination of the swept groups' values."""
    fixed, swept = [], []
    for o in overrides:
        if o.is_hydra_override() or _is_plain_value(o):
            continue
        if o.is_sweep_override():
            if not _is_group(o):
                continue
            swept.append([f"{o.get_key_element()}={value}" for value in o.sweep_string_iterator()])
        else:
            fixed.append(o.input_line)
    experiment = [choice for choice in fixed if choice.startswith("experiment=")]
    for combination in itertools.product(*swept):
        yield [*fixed, *combination], " ".join(combination or experiment)


def _argument_hint(cfg, key: str, value: str) -> str | None:
    """For ``optimizer.NAME`` or ``scheduler.NAME`` missing from the config: how to set the argument NAME, when the
    group's class takes it (``+key=value``) or another option of the group does; None otherwise. (Validation
    checks the optimizer's and scheduler's other keys against their classes' signatures the same way.)"""
    import inspect

    from hydra.utils import get_class

    group, _, name = key.partition(".")
    if group not in ("optimizer", "scheduler") or "." in name or config_node(cfg, f"{group}._target_") is None:
        return None

    def takes(target: str) -> bool:
        try:
            return name in inspect.signature(get_class(target)).parameters
        except Exception:  # not importable: validation names it
            return False

    target = str(raw_value(config_node(cfg, f"{group}._target_")))
    if takes(target):
        return (f"the {group} config ({target}) does not list {name}, which {target} takes as an argument: add it "
                f"with +{key}={value}.")  # fmt: skip
    for option in sorted(files(CONFIG_PACKAGE).joinpath(group).iterdir(), key=lambda entry: entry.name):
        other = re.search(r"^_target_:\s*(\S+)", option.read_text(encoding="utf-8"), re.MULTILINE)
        if option.name.endswith(".yaml") and other and other.group(1) != target and takes(other.group(1)):
            return (f"{target}, this run's {group}, takes no argument {name}; {other.group(1)} does: use "
                    f"{group}={option.name[: -len('.yaml')]} +{key}={value}, or leave {key} out.")  # fmt: skip
    arguments = [p for p in inspect.signature(get_class(target)).parameters if p not in ("self", "params", "optimizer")]
    return f"{target}, this run's {group}, takes no argument {name}; its arguments are: {', '.join(arguments)}."


def _closest_key(cfg, key: str) -> str | None:
    """The real key that ``key`` most resembles: a sibling of a similar name, else a setting of a similar last name
    in the key's group (anywhere, when the config has no such group: ``max_epochs`` -> ``trainer.max_epochs``)."""
    from omegaconf import DictConfig

    parent, _, name = key.rpartition(".")
    siblings = config_node(cfg, parent)
    if isinstance(siblings, DictConfig):
        close = difflib.get_close_matches(name, [str(k) for k in siblings.keys()], n=1, cutoff=0.6)
        if close:
            return f"{parent}.{close[0]}" if parent else close[0]
    group = key.split(".")[0]
    scope = group + "." if "." in key and isinstance(config_node(cfg, group), DictConfig) else ""
    paths = [path for path in dotted_keys(cfg)
             if path.startswith(scope) and not isinstance(config_node(cfg, path), DictConfig)]  # settings, not groups
    close = difflib.get_close_matches(name, [path.rsplit(".", 1)[-1] for path in paths], n=1, cutoff=0.6)
    return next((path for path in paths if close and path.rsplit(".", 1)[-1] == close[0]), None)

