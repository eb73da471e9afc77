"""The stack files: ``Pulumi.<stack>.yaml`` read and flattened into the strings the engine hands
a program (for the offline plan and the operator commands, which run without the engine)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml


class PlanError(RuntimeError):
    """A stack cannot be planned: its ``Pulumi.<stack>.yaml`` cannot be read (no such stack, a
    secret value), or the program reported errors (raised by ``infra.plan``)."""


def project_dir(start: Path | None = None) -> Path:
    """The directory holding Pulumi.yaml: searched upwards from ``start`` (or the cwd), then
    the repository this package was installed from."""
    candidates: list[Path] = []
    here = (start or Path.cwd()).resolve()
    candidates += [here, *here.parents]
    candidates.append(Path(__file__).resolve().parents[2])
    for candidate in candidates:
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    raise PlanError("cannot find Pulumi.yaml in the current directory or its parents")


def available_stacks(directory: Path) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in directory.glob("Pulumi.*.yaml"))


STACK_NAME = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9_.-]+")
"""Pulumi's rule for a stack name: "Stack names may only contain alphanumeric characters,
hyphens, underscores, or periods" (https://www.pulumi.com/docs/iac/concepts/stacks/). A path
such as ``../x`` is not a stack: it would read a file outside the project."""


def read_stack_config(stack: str, directory: Path | None = None) -> dict[str, str]:
    """Flatten ``Pulumi.<stack>.yaml`` into the strings the engine hands a program."""
    directory = directory or project_dir()
    if not STACK_NAME.fullmatch(stack):
        stacks = ", ".join(available_stacks(directory)) or "none"
        raise PlanError(
            f"stack name {stack!r}: a stack name has only letters, digits, '-', '_' and '.' "
            f"(stacks: {stacks})"
        )
    path = directory / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        stacks = ", ".join(available_stacks(directory)) or "none"
        raise PlanError(f"no stack {stack!r}: {path.name} does not exist (stacks: {stacks})")
    stat = path.stat()
    return dict(_parsed_stack_file(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=32)
def _parsed_stack_file(path: str, _mtime_ns: int, _size: int) -> Mapping[str, str]:
    """A stack file's config, parsed once per version of the file (the offline plan reads it
    for every plan it evaluates; ``plan --all`` evaluates each stack's five times)."""
    name = Path(path).name
    document = _load_yaml(Path(path)) or {}
    if not isinstance(document, Mapping):
        raise PlanError(f"{name}: must be a mapping with a 'config' key")
    config = document.get("config") or {}
    if not isinstance(config, Mapping):
        raise PlanError(f"{name}: 'config' must be a mapping of NAMESPACE:KEY to values")
    raw: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and "secure" in value:
            raise PlanError(f"{name}: {key} is a secret; the offline plan cannot decrypt it")
        raw[str(key)] = config_string(value)
    return MappingProxyType(raw)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last
    one silently, so the first value of a duplicated config key would be ignored)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _value_node in node.value:
            key = self.construct_object(key_node, deep=deep)  # pyright: ignore[reportUnknownMemberType]
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found key {key!r} a second time (first on line {first}); each key may be "
                    "given once",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _load_yaml(path: Path) -> Any:
    """The stack file's document; a syntax error or a duplicated key is a ``PlanError`` that
    names the file and the line (no traceback)."""
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        what = " ".join(p for p in (error.context, error.problem) if p)
        raise PlanError(f"{path.name}: {where}: {what}") from None
    except yaml.YAMLError as error:
        raise PlanError(f"{path.name}: not valid YAML: {error}") from None


def config_string(value: Any) -> str:
    """A stack-file value as the string the engine hands the program (the stack files' YAML
    scalars, lists and objects; what `jobstream adopt --write` puts there reads back the same)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)
