"""The vocabulary of the validation boundary: what a key may hold (``Rule`` and its makers ``whole``, ``positive``,
``one_of`` ...), how a value is written back (``show``), and the errors for a bad value, a missing key and a key
nothing reads (``unknown_key``, with the real key it resembles). Each error is one paragraph naming the key, the
value, what it must be and an example."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

Config = Mapping[str, Any]


@dataclass(frozen=True)
class Rule:
    """What one key may hold: ``accepts(value)`` and, for the message, what it means, what it must be, an example."""

    meaning: str  # "the number of epochs to train"
    must_be: str  # "a whole number >= 1"
    accepts: Callable[[Any], bool]
    example: Any
    optional: bool = False  # null is allowed too

    def check(self, key: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if value is None or not self.accepts(value):
            must_be = f"{self.must_be}, or null" if self.optional else self.must_be
            example = show(self.example, quote=False)
            raise ConfigError(f"{key}={show(value)}: {self.meaning} must be {must_be}, e.g. {key}={example}.")


def show(value: Any, quote: bool = True) -> str:
    """A value as it is written on the command line: null for None, lists in brackets, strings quoted (so that
    spaces show) unless ``quote`` is false."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value) if quote else value
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show(item, quote) for item in value) + "]"
    return str(value)


def is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole(meaning: str, example: int, minimum: int = 1, maximum: int | None = None, optional: bool = False) -> Rule:
    """A whole number (an int: 1.5, 1e3 and true are refused) in [minimum, maximum]."""
    bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    return Rule(
        meaning,
        f"a whole number {bound}",
        lambda v: is_whole(v) and v >= minimum and (maximum is None or v <= maximum),
        example,
        optional,
    )


def positive(meaning: str, example: float, optional: bool = False) -> Rule:
    """A finite number > 0."""
    return Rule(meaning, "a finite number > 0", lambda v: is_number(v) and v > 0, example, optional)


def non_negative(meaning: str, example: float) -> Rule:
    """A finite number >= 0."""
    return Rule(meaning, "a finite number >= 0", lambda v: is_number(v) and v >= 0, example)


def in_range(meaning: str, example: float, low: float, high: float, *, low_open: bool, high_open: bool) -> Rule:
    """A finite number between ``low`` and ``high``, each end included unless it is open."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def accepts(v: Any) -> bool:
        if not is_number(v):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return Rule(meaning, f"a number in {interval}", accepts, example)


def one_of(meaning: str, choices: Iterable[str]) -> Rule:
    """One of the named ``choices``."""
    choices = tuple(choices)
    return Rule(meaning, f"one of {', '.join(choices)}", lambda v: v in choices, choices[0])


def flag(meaning: str) -> Rule:
    """true or false (not 1, not 'yes')."""
    return Rule(meaning, "true or false", lambda v: isinstance(v, bool), True)


def text(meaning: str, example: str, optional: bool = False) -> Rule:
    """A non-empty string."""
    return Rule(meaning, "a non-empty string", lambda v: isinstance(v, str) and v != "", example, optional)


def numbers(meaning: str, example: list, accepts: Callable[[Any], bool], must_be: str) -> Rule:
    """A non-empty list of numbers, each accepted by ``accepts``."""
    return Rule(
        meaning,
        f"a non-empty list of {must_be}",
        lambda v: isinstance(v, list) and len(v) > 0 and all(is_number(x) and accepts(x) for x in v),
        example,
    )


Schema = Mapping[str, Rule]


def check_values(section: Config, group: str, rules: Schema) -> None:
    """Check the value of each key of ``section`` (the config group ``group``) that ``rules`` has a rule for."""
    for key, rule in rules.items():
        if key in section:
            rule.check(f"{group}.{key}", section[key])


def check_schema(section: Config, group: str, schema: Schema, extra: Iterable[str] = ()) -> None:
    """Check every key of ``section`` (the config group ``group``) against ``schema``; no other key is allowed
    (but those in ``extra``, checked elsewhere), and every key of ``schema`` that is not optional must be there."""
    allowed = {*schema, *extra}
    for key, value in section.items():
        if key not in allowed:
            raise unknown_key(group, key, value, allowed)
    check_values(section, group, schema)
    missing = [key for key in schema if key not in section and not schema[key].optional]
    if missing:
        raise missing_key(group, missing[0], schema[missing[0]])


def missing_key(group: str, key: str, rule: Rule | None, needed_by: str = "") -> ConfigError:
    """The error for a key ``group.key`` that must be set, with what it means (``rule``) or what needs it."""
    if rule is None:
        return ConfigError(f"{group} has no {key}, an argument that {needed_by} needs: set it, e.g. "
                           f"+{group}.{key}=VALUE.")  # fmt: skip
    return ConfigError(f"{group} has no {key}: {rule.meaning} must be set, e.g. +{group}.{key}={show(rule.example)}.")


def unknown_key(
    group: str, name: str, value: Any, known: Iterable[str], why: str = "is not a setting of node-run: nothing reads it"
) -> ConfigError:
    """The error for a key ``group.name`` that no code reads, with the real key of ``group`` it resembles."""
    prefix, known = (f"{group}." if group else ""), sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        hint = f" Did you mean {prefix}{close[0]}={show(value)}?"
    elif known:
        hint = f" The keys {f'of {group} ' if group else ''}are: {', '.join(known)}."
    else:
        hint = f" {group} takes no settings: remove it."
    return ConfigError(f"{prefix}{name}={show(value)} {why}.{hint}")
