"""How a config key is declared, and what a bad value reports.

A key is declared once, as the metadata of the section field that holds its value
(``key(...)``): name, parser (which is also the table's "allowed" text), default and help. The
``section`` decorator collects a section's keys in declaration order; ``KEYS``, the parsing,
the building of the typed config and the README table are all derived from them. A key whose
value no field holds (it only steers a rule, like ``allowReducedNat``) is declared as a
``ClassVar`` of its section with ``rule_key(...)``, so it keeps its place in the table.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, TypeVar, cast

NAMESPACE = "jobstream"
NAMESPACES: tuple[str, ...] = (NAMESPACE, "aws", "pulumi")
"""Config namespaces this program reads (its own, the AWS provider's, Pulumi's)."""
ESCAPE_KEY = "allowUnlistedValues"
"""The key that accepts a value missing from infra/known_values.json."""


class Environment(StrEnum):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


# --------------------------------------------------------------------------------------------
# Errors


def qualified(key: str) -> str:
    """``phase`` -> ``jobstream:phase``; a key that names its namespace (or a pseudo-key in
    parentheses) is shown as it is."""
    return key if ":" in key or key.startswith("(") else f"{NAMESPACE}:{key}"


@dataclass(frozen=True)
class Problem:
    key: str
    value: object
    allowed: str
    related: Mapping[str, object] = field(default_factory=dict)
    """Other keys (and their values) of a cross-key rule: the message names them too."""

    def __str__(self) -> str:
        others = "".join(f" (with {qualified(k)} = {_shown(v)})" for k, v in self.related.items())
        return f"{qualified(self.key)} = {_shown(self.value)}{others}: {self.allowed}"


def _shown(value: object) -> str:
    """A value as the stack file spells it (an enum by its value)."""
    if value is MISSING:
        return "<missing>"
    return repr(value.value if isinstance(value, StrEnum) else value)


class ConfigError(ValueError):
    """One or more stack config values are invalid; each problem names key, value, allowed.

    ``source`` is the file the values came from (``Pulumi.dev.yaml``) when the caller knows it."""

    def __init__(self, problems: list[Problem], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "value" if len(problems) == 1 else "values"
        where = f" in {source}" if source else ""
        super().__init__(
            f"invalid stack configuration{where} ({len(problems)} bad {noun}):\n{lines}"
        )

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.problems]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()
"""The value of a required key that is not given (or of a key whose value did not parse)."""


class InvalidValueError(Exception):
    """Raised by a parser; carries the 'allowed' text."""


Values = Mapping[str, Any]
"""Parsed values by key name: what the rules read."""


def problem(v: Values, key: str, allowed: str, *others: str) -> Problem:
    """A rule's finding, reported on ``key`` with the rule's other keys beside it."""
    return Problem(key, v[key], allowed, related={k: v[k] for k in others})


# --------------------------------------------------------------------------------------------
# The declaration.


@dataclass(frozen=True)
class Key:
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    section: str
    required: bool = False
    true_in_prod: bool = False
    """Unset (None) means true in prod and false elsewhere."""
    attribute: str | None = None
    """The section field that holds the value; None for a key only rules read."""

    @property
    def allowed(self) -> str:
        return self.parse.__doc__ or ""

    def resolve(self, value: Any, *, prod: bool) -> Any:
        return prod if self.true_in_prod and value is None else value


REQUIRED: Any = MISSING
"""The default of a key the stack file must give."""


class _TrueInProd:
    def __repr__(self) -> str:
        return "<true in prod>"


TRUE_IN_PROD: Any = _TrueInProd()
"""The default of a flag that is on in prod and off elsewhere unless the stack file says."""

_KEY = "jobstream.key"


def _declared(name: str, parse: Callable[[str], Any], default: Any, help: str) -> Key:
    if default is TRUE_IN_PROD:
        return Key(name, parse, None, help, "", true_in_prod=True)
    return Key(name, parse, default, help, "", required=default is MISSING)


def key(name: str, parse: Callable[[str], Any], default: Any, help: str) -> Any:
    """The field holding the value of config key ``name``. The field's own default is the key's
    where the key has one that does not depend on the environment."""
    declared = _declared(name, parse, default, help)
    if declared.required or declared.true_in_prod:
        return field(metadata={_KEY: declared})
    return field(default=default, metadata={_KEY: declared})


def rule_key(name: str, parse: Callable[[str], Any], default: Any, help: str) -> Key:
    """A key no field holds (declare it as a ``ClassVar`` where it belongs in the table)."""
    return _declared(name, parse, default, help)


_T = TypeVar("_T")
_KEYS: dict[type, tuple[Key, ...]] = {}
_SECTIONS: dict[str, type] = {}


def section(title: str) -> Callable[[type[_T]], type[_T]]:
    """Register a (dataclass) section: its keys in declaration order under ``title``, and its
    ``rules`` (a static method yielding problems from the parsed values), if it has any."""

    def register(cls: type[_T]) -> type[_T]:
        by_field: dict[str, Field[Any]] = {f.name: f for f in fields(cast(Any, cls))}
        keys: list[Key] = []
        for name in inspect.get_annotations(cls):
            declared = by_field[name].metadata.get(_KEY) if name in by_field else None
            if isinstance(declared, Key):
                keys.append(replace(declared, section=title, attribute=name))
            elif isinstance(cls.__dict__.get(name), Key):
                keys.append(replace(cls.__dict__[name], section=title))
                setattr(cls, name, keys[-1])
        _KEYS[cls] = tuple(keys)
        _SECTIONS[cls.__name__] = cls
        return cls

    return register


def _subsections(cls: type) -> Iterator[tuple[str, type]]:
    for f in fields(cast(Any, cls)):
        # Annotations are strings here (postponed evaluation); sections are known by name.
        sub = _SECTIONS.get(str(f.type))
        if sub is not None:
            yield f.name, sub


def keys_of(cls: type) -> tuple[Key, ...]:
    """A section's own keys, in declaration order."""
    return _KEYS[cls]


def all_keys(cls: type) -> tuple[Key, ...]:
    """A section's keys, then those of the sections it holds, in field order."""
    return _KEYS[cls] + tuple(k for _, sub in _subsections(cls) for k in all_keys(sub))


def all_rules(cls: type) -> Iterator[Callable[[Values], Iterator[Problem]]]:
    rules = getattr(cls, "rules", None)
    if rules is not None:
        yield rules
    for _, sub in _subsections(cls):
        yield from all_rules(sub)


def build(cls: type[_T], v: Values, *, prod: bool, **given: Any) -> _T:
    """The section from parsed values (and its sections from theirs); ``given`` are the fields
    that no key holds."""
    values = dict(given)
    for k in _KEYS[cls]:
        if k.attribute is not None:
            values[k.attribute] = k.resolve(v[k.name], prod=prod)
    for name, sub in _subsections(cls):
        values[name] = build(sub, v, prod=prod)
    return cls(**values)


# --------------------------------------------------------------------------------------------
# Parsers: raw Pulumi config strings -> typed values. Pulumi hands every value over as a string;
# objects and lists arrive as JSON. Each parser's docstring is its "allowed" column.


def integer(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise InvalidValueError(f"must be a whole number from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise InvalidValueError(f"must be a whole number from {lo} to {hi}")
        return value

    parse.__doc__ = f"integer {lo}..{hi}"
    return parse


def number(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise InvalidValueError(f"must be a number from {lo:g} to {hi:g}") from None
        if not lo <= value <= hi:
            raise InvalidValueError(f"must be a number from {lo:g} to {hi:g}")
        return value

    parse.__doc__ = f"number {lo:g}..{hi:g}"
    return parse


def boolean(raw: str) -> bool:
    text = str(raw).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise InvalidValueError("must be true or false")


boolean.__doc__ = "true / false"


def choice(enum: type[StrEnum]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            return enum(str(raw).strip())
        except ValueError:
            raise InvalidValueError("must be one of " + ", ".join(m.value for m in enum)) from None

    parse.__doc__ = " / ".join(m.value for m in enum)
    return parse


def one_of(values: tuple[int, ...], what: str) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(str(raw).strip())
        except ValueError:
            value = -1
        if value not in values:
            raise InvalidValueError(f"must be one of the {what}: " + ", ".join(map(str, values)))
        return value

    parse.__doc__ = f"one of the {what}"
    return parse


def pattern(regex: re.Pattern[str], allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = str(raw).strip()
        if not regex.match(value):
            raise InvalidValueError(allowed)
        return value

    parse.__doc__ = allowed
    return parse


def optional(inner: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        return None if str(raw).strip() == "" else inner(raw)

    parse.__doc__ = f"{inner.__doc__} (optional)"
    return parse


def json_list(raw: str, allowed: str) -> Any:
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        raise InvalidValueError(allowed) from None


def string_list(
    item: re.Pattern[str], what: str, *, allow_empty: bool = False
) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        allowed = f"must be a {'' if allow_empty else 'non-empty '}JSON list of {what}"
        value = json_list(raw, allowed)
        if not isinstance(value, list) or (not value and not allow_empty):
            raise InvalidValueError(allowed)
        if not all(isinstance(v, str) and item.match(v) for v in value):
            raise InvalidValueError(allowed)
        return tuple(value)

    parse.__doc__ = f"list of {what}"
    return parse


# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip

log_retention = one_of(LOG_RETENTION_DAYS, "CloudWatch Logs retention periods")
