"""Edit ``Pulumi.<stack>.yaml`` in place, keeping its comments, order and quoting.

``ruamel.yaml`` in round-trip mode: a key that exists keeps its place and its comment, a new
key goes to the end of ``config:``, a key set to None is removed. What ``pulumi config set``
would do to the file, without the Pulumi CLI.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ops.errors import UsageError

Value = str | int | float | bool | list[str] | None
"""A config value as it is written: None removes the key."""


def updated_text(text: str, values: Mapping[str, Value], *, source: str) -> str:
    """The stack file's text with ``values`` (``namespace:key`` -> value) set."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # a long ARN stays on one line
    try:
        document: Any = yaml.load(text)
    except YAMLError as error:
        raise UsageError(f"{source} is not valid YAML: {error}") from None
    if document is None:
        document = yaml.load("config: {}\n")
    if not isinstance(document, dict):
        raise UsageError(f"{source}: the top level is not a mapping")
    config = document.get("config")
    if config is None:
        document["config"] = config = yaml.load("{}\n")
    if not isinstance(config, dict):
        raise UsageError(f"{source}: 'config' is not a mapping")
    for key, value in values.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def write_values(path: Path, values: Mapping[str, Value]) -> bool:
    """Set ``values`` in the stack file at ``path``; whether the file changed."""
    before = path.read_text()
    after = updated_text(before, values, source=path.name)
    if after == before:
        return False
    temporary = path.with_name(f".{path.name}.adopt")
    temporary.write_text(after)
    temporary.replace(path)  # all or nothing: a crash leaves the old file
    return True
