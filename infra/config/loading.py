"""From flat Pulumi config to a ``StackConfig``: every key parsed on its own, the checks against
the region and the lists of known values, then the sections' rules, and the README table."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from infra.config.adoption import adoption_problems
from infra.config.keys import (
    ESCAPE_KEY,
    MISSING,
    NAMESPACE,
    NAMESPACES,
    ConfigError,
    Environment,
    InvalidValueError,
    Problem,
    Values,
    all_rules,
    build,
)
from infra.config.schema import KEYS, KEYS_BY_NAME, StackConfig
from infra.config.sections import kms_key_problems
from jobstream.contract.names import longest_stack_name, name_problems

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")


def parse(
    raw: Mapping[str, str],
    *,
    stack: str,
    project: str = "jobstream",
    source: str | None = None,
) -> StackConfig:
    """Build a ``StackConfig`` from flat Pulumi config (``{"jobstream:phase": "3", ...}``).

    Raises ``ConfigError`` listing every bad, missing or unknown key; ``source`` (the stack
    file's name) is named in its message.
    """
    problems: list[Problem] = []
    prefix = f"{NAMESPACE}:"
    given = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}

    problems += _namespace_problems(raw)
    for name in sorted(set(given) - set(KEYS_BY_NAME)):
        close = difflib.get_close_matches(name, KEYS_BY_NAME, n=1)
        hint = f"; did you mean {NAMESPACE}:{close[0]}?" if close else ""
        problems.append(Problem(name, given[name], f"is not a known key{hint}"))

    values: dict[str, Any] = {}
    for key in KEYS:
        if key.name not in given:
            if key.required:
                problems.append(Problem(key.name, MISSING, f"is required ({key.help})"))
            values[key.name] = key.default
            continue
        try:
            values[key.name] = key.parse(given[key.name])
        except InvalidValueError as bad:
            problems.append(Problem(key.name, given[key.name], str(bad)))
            values[key.name] = MISSING

    region = str(raw.get("aws:region", "")).strip()
    if not _REGION.match(region):
        problems.append(
            Problem(
                "(aws:region)",
                region or MISSING,
                "aws:region must be set to an AWS region like us-east-1",
            )
        )
        region = ""

    if values["environment"] is None:
        try:
            values["environment"] = Environment(stack)
        except ValueError:
            problems.append(
                Problem(
                    "environment",
                    MISSING,
                    f"is required when the stack name ({stack!r}) is not dev, staging or prod",
                )
            )
            values["environment"] = MISSING

    problems += _stack_name_problems(stack)
    problems += _unlisted_values(values, region, unlisted_ok=values[ESCAPE_KEY] is True)
    if region:
        problems += kms_key_problems(values, region, _partition(region))
        problems += adoption_problems(values, region)
    if not problems:
        # The sections' rules relate several keys: they run once every key parsed on its own.
        problems += (p for rules in all_rules(StackConfig) for p in rules(values))
    if problems:
        raise ConfigError(problems, source=source)
    environment: Environment = values["environment"]
    return build(
        StackConfig,
        values,
        prod=environment is Environment.PROD,
        project=project,
        stack=stack,
        region=region,
        environment=environment,
    )


def _namespace_problems(raw: Mapping[str, str]) -> list[Problem]:
    """A key under a namespace close to ``jobstream`` (``jobsteam:phase``) would be ignored
    silently: the program reads its own namespace only. Other namespaces (another provider's)
    are not this program's to judge."""
    out: list[Problem] = []
    for key in sorted(raw):
        namespace, sep, _name = key.partition(":")
        if not sep or namespace in NAMESPACES:
            continue
        if difflib.get_close_matches(namespace.lower(), [NAMESPACE], n=1, cutoff=0.7):
            out.append(
                Problem(
                    key,
                    raw[key],
                    f"namespace {namespace!r} is not one this program reads (did you mean "
                    f"{NAMESPACE}:{_name}?); its namespaces are " + ", ".join(NAMESPACES),
                )
            )
    return out


def _stack_name_problems(stack: str) -> list[Problem]:
    """Every name derived from the stack name (``jobstream.contract.names``) against the rule of
    the service that takes it."""
    found = name_problems(stack)
    if not found:
        return []
    longest = longest_stack_name()
    details = "; ".join(f"{kind} {value!r}: {why}" for kind, value, why in found)
    return [
        Problem(
            "(stack name)",
            stack,
            f"derives AWS names that their services refuse ({details}); use a stack name of "
            f"lowercase letters, digits and single hyphens, starting with a letter, at most {longest} "
            "characters",
        )
    ]


@dataclass(frozen=True)
class KnownList:
    values: frozenset[str]
    prefixes: tuple[str, ...]
    source: str
    compiled: str

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and (value in self.values or value.startswith(self.prefixes))


@cache
def known_values() -> Mapping[str, KnownList]:
    """infra/known_values.json: the lists of values that exist, with source and date."""
    document = json.loads(resources.files("infra").joinpath("known_values.json").read_text())
    return {
        name: KnownList(
            frozenset(entry["values"]),
            tuple(entry.get("prefixes", ())),
            entry["source"],
            entry["compiled"],
        )
        for name, entry in document.items()
        if isinstance(entry, dict)
    }


# (key, known list, what the list holds); "(aws:region)" is the provider's key.
_KNOWN_KEYS: tuple[tuple[str, str, str], ...] = (
    ("kafkaInstanceType", "mskInstanceTypes", "MSK Standard broker types"),
    ("kafkaVersion", "mskKafkaVersions", "Kafka versions MSK offers"),
    ("dbEngineVersion", "rdsPostgresMajors", "PostgreSQL major versions RDS offers"),
    ("(aws:region)", "awsRegions", "AWS regions"),
)
_RESERVED_USER_KEYS: tuple[str, ...] = ("dbMasterUsername", "dbAppUsername")


def _unlisted_values(v: Values, region: str, *, unlisted_ok: bool) -> Iterator[Problem]:
    """Values that match their pattern but name nothing that exists (a broker type, a version,
    a region); ``jobstream:allowUnlistedValues`` accepts them."""
    lists = known_values()
    escape = f"set {NAMESPACE}:{ESCAPE_KEY} to true to accept a value this list does not know yet"
    for key, list_name, what in _KNOWN_KEYS:
        value = region if key == "(aws:region)" else v[key]
        if value is MISSING or not value:
            continue
        if key == "dbEngineVersion":
            value = str(value).split(".")[0]
        known = lists[list_name]
        if value in known or unlisted_ok:
            continue
        shown = ", ".join(sorted(known.values))
        yield Problem(
            key,
            region if key == "(aws:region)" else v[key],
            f"is not one of the {what} known on {known.compiled} ({shown}; source: "
            f"infra/known_values.json {list_name}); {escape}",
        )
    reserved = lists["postgresReservedUsernames"]
    for key in _RESERVED_USER_KEYS:
        value = v[key]
        # Reserved words are refused by the engine itself: no escape.
        if value is not MISSING and value in reserved:
            yield Problem(
                key,
                value,
                "is a name PostgreSQL or RDS reserves (an SQL reserved word, public/none, or a "
                f"name starting with {' or '.join(reserved.prefixes)}); choose another user name",
            )


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def load() -> StackConfig:
    """Read the running Pulumi program's stack config (the program's single config read)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    # Every key of the stack with its namespace: the engine's environment, then explicit settings.
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    stack = pulumi.get_stack()
    return parse(raw, stack=stack, project=pulumi.get_project(), source=f"Pulumi.{stack}.yaml")


def markdown_table() -> str:
    """The README's configuration-key table, rendered from ``KEYS``."""
    lines: list[str] = []
    section = ""
    for key in KEYS:
        if key.section != section:
            section = key.section
            if lines:
                lines.append("")
            lines += [
                f"**{section}**",
                "",
                "| key | allowed | default | what it sets |",
                "|---|---|---|---|",
            ]
        default = "(required)" if key.required else _show_default(key.default)
        lines.append(f"| `{NAMESPACE}:{key.name}` | {key.allowed} | {default} | {key.help} |")
    return "\n".join(lines) + "\n"


def _show_default(value: Any) -> str:
    if value is None:
        return "see text"
    if isinstance(value, StrEnum):
        return f"`{value.value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`" + json.dumps(list(value)) + "`"
    return f"`{value}`"
