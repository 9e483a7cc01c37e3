"""Which keys a config group may hold: the arguments of the class or function its ``_target_`` names.

A group that Hydra instantiates (``model``, ``optimizer``, ``scheduler``), a task (built as ``Class(cfg, device,
**settings)``) and a toy data set's ``data.sampler`` (``toys.DATASETS[data.dataset](**sampler)``) pass their keys
to a constructor, so its signature is the one list of the keys they take: adding an argument to a model is all it
takes for ``model.<argument>`` to be accepted, and a key no argument reads is refused with the argument it
resembles. Where a class forwards ``**kwargs`` to its base class (``PlanarCNF`` to ``ContinuousFlow``, a density
task to ``FlowTask``), the base's keyword-only arguments are its arguments too; a class whose chain ends in
``**kwargs`` nobody names takes any key. The exceptions, keys that are not arguments and arguments that are not
keys, are ``NOT_ARGUMENTS`` and ``SUPPLIED`` below, each with its reason.
"""

from __future__ import annotations

import inspect
from typing import Any

from .rules import Config, Rule, Schema, check_values, flag, is_number, is_whole, missing_key, unknown_key

# Keys a group may hold that are no argument of its _target_: Hydra's instantiate reads them.
NOT_ARGUMENTS = {
    "_target_": "the class or function to build (Hydra's instantiate, node-run's build_task)",
    "_convert_": "how Hydra's instantiate converts the config's containers",
    "_recursive_": "whether Hydra's instantiate builds nested _target_ groups",
    "_partial_": "whether Hydra's instantiate returns a partial",
}
# Arguments the runner passes itself, never keys of the group.
SUPPLIED = {
    "task": {"cfg": "build_task passes the whole composed config", "device": "build_task passes the training device"},
    "optimizer": {"params": "the trainer passes the model's parameters"},
    "scheduler": {"optimizer": "the trainer passes the optimizer"},
}


def arguments(target: Any) -> dict[str, inspect.Parameter]:
    """The arguments ``target`` (a class or a function) takes by keyword, following the ``**kwargs`` a class
    forwards to its base class: the base's keyword-only arguments join. A chain that ends in ``**kwargs`` keeps
    that parameter (any key is taken)."""
    if not isinstance(target, type):
        return _keywords(inspect.signature(target).parameters.values())
    found: dict[str, inspect.Parameter] = {}
    classes = [cls for cls in target.__mro__ if "__init__" in vars(cls) and cls is not object]
    for index, klass in enumerate(classes):
        own = list(inspect.signature(klass.__init__).parameters.values())[1:]  # without self
        if index:  # a base reached through **kwargs: only what can be passed on by keyword alone
            own = [p for p in own if p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD)]
        forwards = next((p for p in own if p.kind is p.VAR_KEYWORD), None)
        found.update({name: p for name, p in _keywords(own).items() if name not in found and p is not forwards})
        if forwards is None:
            return found
    return {**found, forwards.name: forwards} if classes else found


def _keywords(parameters: Any) -> dict[str, inspect.Parameter]:
    return {p.name: p for p in parameters if p.kind not in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL)}


def check_arguments(section: Config, group: str, target: Any, rules: Schema | None = None, name: str = "") -> None:
    """The keys of ``section`` (the config group ``group``, built by ``target``) against ``target``'s arguments: a
    key no argument reads is refused, an argument without a default must be set, and an argument without a rule
    in ``rules`` is checked by its annotation (``_typed``). ``name``: the target as the config names it."""
    name = name or f"{target.__module__}.{target.__qualname__}"
    supplied = SUPPLIED.get(group, {})
    parameters = {key: p for key, p in arguments(target).items() if key not in supplied}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    accepted = [key for key, p in parameters.items() if p.kind is not p.VAR_KEYWORD]
    ours = name.startswith("node_experiments.")
    why = "is not a setting of node-run: nothing reads it" if ours else f"is not an argument of {name}: nothing reads it"
    for key, value in section.items():
        if key not in NOT_ARGUMENTS and key not in accepted and not takes_any:
            raise unknown_key(group, key, value, accepted, why)
    rules = rules or {}
    for key in accepted:
        if key not in section and parameters[key].default is inspect.Parameter.empty:
            raise missing_key(group, key, rules.get(key), name)
    typed = {key: rule for key in accepted if key not in rules and (rule := _typed(name, key, parameters[key]))}
    check_values(section, group, typed)


def _typed(name: str, key: str, parameter: inspect.Parameter) -> Rule | None:
    """The rule an argument's annotation gives where no rule of its own says more: ``bool`` true or false, ``int``
    a whole number, ``float`` a finite number (the example: its default)."""
    kind = getattr(parameter.annotation, "__name__", parameter.annotation)
    meaning, default = f"{name.rpartition('.')[2]}'s argument {key}", parameter.default
    if kind == "bool":
        return flag(meaning)
    if kind in ("int", "float"):
        must_be, accepts = ("a whole number", is_whole) if kind == "int" else ("a finite number", is_number)
        return Rule(meaning, must_be, accepts, 1 if default is None or default is parameter.empty else default)
    return None


def takes(target: Any, key: str) -> bool:
    """Whether ``target`` has the argument ``key``."""
    return key in arguments(target)
