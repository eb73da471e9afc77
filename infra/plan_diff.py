"""Comparing two offline plans: which resources a change adds, removes and changes, down to
the changed values inside JSON documents and lists, and which changes replace a stateful
resource (``infra.replacement``): what ``jobstream plan --diff-from-phase`` prints."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra.plan import Plan, PlannedResource
from infra.replacement import Replacement, replacement

# ---- comparing two plans ---------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    urn: str
    type: str
    keys: Mapping[str, tuple[Any, Any]]
    replacement: Replacement | None = None
    """Set when the change replaces a stateful resource (infra/replacement.py): a blocker."""
    custom: bool = True
    """False for a component (only its flags can change)."""

    def value_changes(self, key: str) -> list[ValueChange]:
        """What changed inside the value of ``key`` (see ``value_changes``)."""
        old, new = self.keys[key]
        return value_changes(old, new)


_ABSENT: Any = object()


@dataclass(frozen=True)
class ValueChange:
    """One changed leaf of an input: its ``path`` (``""`` for the whole value, else like
    ``consumer_modes.kafka`` or ``Statement[1].Action``) and the values before and after;
    ``absent`` on a side where the path does not exist."""

    path: str
    old: Any = _ABSENT
    new: Any = _ABSENT

    @property
    def added(self) -> bool:
        return self.old is _ABSENT

    @property
    def removed(self) -> bool:
        return self.new is _ABSENT

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if not self.added:
            out["old"] = self.old
        if not self.removed:
            out["new"] = self.new
        return out


def is_structured(value: Any) -> bool:
    """A mapping, a list, or a string that holds a JSON object or array (a policy document, the
    routing document, a dashboard body)."""
    return isinstance(value, Mapping | list) or _json_document(value) is not None


def _json_document(value: Any) -> dict[str, Any] | list[Any] | None:
    if not isinstance(value, str) or not value.lstrip().startswith(("{", "[")):
        return None
    try:
        document = json.loads(value)
    except json.JSONDecodeError:
        return None
    return document if isinstance(document, dict | list) else None


def value_changes(old: Any, new: Any, path: str = "") -> list[ValueChange]:
    """The leaves that differ between two input values, in order: mappings by key, lists by
    position (the longer list's extra items added or removed whole), JSON text parsed first, so
    a changed policy or routing document shows the keys that changed, not the whole string."""
    old_doc, new_doc = _json_document(old), _json_document(new)
    if old_doc is not None and new_doc is not None:
        old, new = old_doc, new_doc
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes: list[ValueChange] = []
        for key in [*old, *(k for k in new if k not in old)]:
            sub = _path(path, str(key))
            if key not in new:
                changes.append(ValueChange(sub, old=old[key]))
            elif key not in old:
                changes.append(ValueChange(sub, new=new[key]))
            else:
                changes += value_changes(old[key], new[key], sub)
        return changes
    if isinstance(old, list) and isinstance(new, list):
        return _list_changes(old, new, path)
    return [] if old == new else [ValueChange(path, old, new)]


SIMILAR = 0.6
"""How alike (difflib's ratio of their JSON) two items of a list must be to count as one item
that changed rather than one removed and another added."""


def _list_changes(old: list[Any], new: list[Any], path: str) -> list[ValueChange]:
    """Lists are aligned first: equal items anchor (difflib), so an item inserted in the middle
    shows as one item added, not as every later item changed. Between anchors, items that are
    objects or lists pair by similarity (a dashboard widget that moved, a policy statement that
    changed), other items by position; an item without a partner is added or removed whole.
    Paths give an item's position in the new list (in the old one for a removed item)."""
    a = [json.dumps(x, sort_keys=True) for x in old]
    b = [json.dumps(x, sort_keys=True) for x in new]
    changes: list[ValueChange] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        structured = all(isinstance(x, Mapping | list) for x in [*old[i1:i2], *new[j1:j2]])
        pairs = (
            _pair_by_similarity(a[i1:i2], b[j1:j2])
            if structured
            else _pair_by_position(i2 - i1, j2 - j1)
        )
        for i, j in pairs:
            if i is not None and j is not None:
                changes += value_changes(old[i1 + i], new[j1 + j], f"{path}[{j1 + j}]")
            elif i is not None:
                changes.append(ValueChange(f"{path}[{i1 + i}]", old=old[i1 + i]))
            elif j is not None:
                changes.append(ValueChange(f"{path}[{j1 + j}]", new=new[j1 + j]))
    return changes


_Pairs = list[tuple[int | None, int | None]]


def _pair_by_position(n_old: int, n_new: int) -> _Pairs:
    pairs: _Pairs = [(i, i) for i in range(min(n_old, n_new))]
    pairs += [(i, None) for i in range(n_new, n_old)]
    pairs += [(None, j) for j in range(n_old, n_new)]
    return pairs


def _pair_by_similarity(old: list[str], new: list[str]) -> _Pairs:
    """The order-keeping pairing of two lists of JSON texts with the greatest total
    similarity, pairs below ``SIMILAR`` left apart (a small dynamic programme)."""

    def similarity(x: str, y: str) -> float:
        matcher = difflib.SequenceMatcher(None, x, y, autojunk=False)
        return matcher.ratio() if matcher.quick_ratio() >= SIMILAR else 0.0

    sim = [[similarity(x, y) for y in new] for x in old]
    best = [[0.0] * (len(new) + 1) for _ in range(len(old) + 1)]
    for i in range(len(old) - 1, -1, -1):
        for j in range(len(new) - 1, -1, -1):
            paired = best[i + 1][j + 1] + sim[i][j] if sim[i][j] >= SIMILAR else -1.0
            best[i][j] = max(best[i + 1][j], best[i][j + 1], paired)
    pairs: _Pairs = []
    i = j = 0
    while i < len(old) and j < len(new):
        if sim[i][j] >= SIMILAR and best[i][j] == best[i + 1][j + 1] + sim[i][j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif best[i][j] == best[i + 1][j]:
            pairs.append((i, None))
            i += 1
        else:
            pairs.append((None, j))
            j += 1
    pairs += [(k, None) for k in range(i, len(old))]
    pairs += [(None, k) for k in range(j, len(new))]
    return pairs


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _path(parent: str, key: str) -> str:
    if _IDENTIFIER.match(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key)}]"


@dataclass(frozen=True)
class PlanDiff:
    from_phase: int
    to_phase: int
    added: tuple[PlannedResource, ...]
    removed: tuple[PlannedResource, ...]
    changed: tuple[Change, ...]
    unchanged: int = 0
    """Resources and components alike; ``counts`` tells them apart."""
    unchanged_components: int = 0

    def counts(self) -> dict[str, dict[str, int]]:
        """How many resources (custom resources, the provider included: what the plan's table
        counts) and, apart, how many components are added, removed, changed and unchanged."""

        def split(custom: bool) -> dict[str, int]:
            unchanged_components = self.unchanged_components
            return {
                "added": sum(1 for r in self.added if r.custom is custom),
                "removed": sum(1 for r in self.removed if r.custom is custom),
                "changed": sum(1 for c in self.changed if c.custom is custom),
                "unchanged": self.unchanged - unchanged_components
                if custom
                else unchanged_components,
            }

        return {"resources": split(True), "components": split(False)}

    def to_json(self) -> dict[str, Any]:
        return {
            "fromPhase": self.from_phase,
            "toPhase": self.to_phase,
            "added": [{"urn": r.urn, "type": r.type, "custom": r.custom} for r in self.added],
            "removed": [
                {"urn": r.urn, "type": r.type, "custom": r.custom, "protect": r.protect}
                for r in self.removed
            ],
            "changed": [
                {
                    "urn": c.urn,
                    "type": c.type,
                    "custom": c.custom,
                    "keys": {k: _key_json(o, n) for k, (o, n) in c.keys.items()},
                    "replacement": c.replacement.to_json() if c.replacement else None,
                }
                for c in self.changed
            ],
            "unchanged": self.unchanged,
            "counts": self.counts(),
        }


def _key_json(old: Any, new: Any) -> dict[str, Any]:
    """A changed key in the diff's JSON: old and new as they are, and for a structured value
    (JSON text, a mapping, a list) the ``changes`` inside it."""
    out: dict[str, Any] = {"old": old, "new": new}
    if is_structured(old) and is_structured(new):
        out["changes"] = [c.to_json() for c in value_changes(old, new)]
    return out


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    before, after = old.by_urn(), new.by_urn()
    added = tuple(r for u, r in after.items() if u not in before)
    removed = tuple(r for u, r in before.items() if u not in after)
    changed: list[Change] = []
    unchanged = unchanged_components = 0
    for urn in before.keys() & after.keys():
        keys = _changed_keys(before[urn], after[urn])
        if keys:
            replaces = replacement(after[urn].type, before[urn].inputs, after[urn].inputs)
            changed.append(Change(urn, after[urn].type, keys, replaces, after[urn].custom))
        else:
            unchanged += 1
            unchanged_components += not after[urn].custom
    changed.sort(key=lambda c: c.urn)
    return PlanDiff(
        old.phase, new.phase, added, removed, tuple(changed), unchanged, unchanged_components
    )


def _changed_keys(a: PlannedResource, b: PlannedResource) -> dict[str, tuple[Any, Any]]:
    keys: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(a.inputs) | set(b.inputs)):
        old, new = a.inputs.get(key), b.inputs.get(key)
        if old != new:
            keys[key] = (old, new)
    for flag, old, new in (
        ("(protect)", a.protect, b.protect),
        ("(retainOnDelete)", a.retain_on_delete, b.retain_on_delete),
    ):
        if old != new:
            keys[flag] = (old, new)
    return keys
