"""The layers import in one direction only (docs/architecture.md): each folder's imports,
read from its source with ``ast`` (every import, also those inside functions), stay within what
the folder may use; and a name is imported from the module that defines it, or from one that
exports it on purpose."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_SRC = ROOT / "runtime" / "src"
PULUMI = ("pulumi", "pulumi_aws", "pulumi_kafka", "pulumi_random", "pulumi_policy")
PROJECT = ("components", "infra", "ops", "rehearsal", "policy", "tests", "benchmarks")
RUNTIME = ("jobstream",)


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    module: str
    names: tuple[str, ...] = ()
    """For ``from module import a, b``: the names."""

    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}: {self.module}"


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if ".venv" not in p.parts)


@cache
def imports_of(path: Path) -> tuple[Import, ...]:
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = tuple(alias.name for alias in node.names)
            found.append(Import(path, node.lineno, node.module, names))
    return tuple(found)


def imports_under(folder: Path) -> Iterator[Import]:
    for path in python_files(folder):
        yield from imports_of(path)


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def is_standard_library(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names | {"__future__"}


@dataclass(frozen=True)
class Rule:
    folder: str
    """Relative to the repository root."""
    forbidden: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    """When set: nothing but the standard library and these."""
    why: str = ""

    def allows(self, module: str) -> bool:
        if within(module, self.forbidden):
            return False
        return self.only is None or is_standard_library(module) or within(module, self.only)

    def breaches(self) -> list[str]:
        return [i.where() for i in imports_under(ROOT / self.folder) if not self.allows(i.module)]


RULES = (
    Rule(
        "runtime/src/jobstream/contract",
        only=("jobstream.contract",),
        why="the contract is the standard library only: both sides of every interface load it",
    ),
    Rule(
        "runtime/src/jobstream/messaging",
        forbidden=("jobstream.worker", *PULUMI, *PROJECT),
        why="the library under the worker: producers embed it without the worker",
    ),
    Rule(
        "runtime/src",
        forbidden=(*PULUMI, *PROJECT),
        why="the runtime installs into an ML image or a backend without Pulumi or the project",
    ),
    Rule(
        "components",
        forbidden=(
            "infra",
            "ops",
            "rehearsal",
            "policy",
            "jobstream.messaging",
            "jobstream.worker",
        ),
        why="components take plain values (infra reads the config) and know only the contract",
    ),
    Rule(
        "infra",
        forbidden=("ops", "rehearsal", "policy", "jobstream.messaging", "jobstream.worker"),
        why="the program composes the components; the commands use it, not the other way round",
    ),
    Rule(
        "ops",
        forbidden=("components", "policy", *PULUMI),
        why="the commands take names from the contract and reach the program only through "
        "the offline plan (imported when a command evaluates it), so most start without Pulumi",
    ),
    Rule(
        "rehearsal",
        forbidden=("components", "policy", *PULUMI),
        why="the rehearsal builds its stand-ins from a plan's resources, not from components",
    ),
    Rule(
        "policy",
        forbidden=("components", "infra", "ops", "rehearsal", *RUNTIME),
        why="the policy pack runs in its own environment (policy/requirements.txt)",
    ),
    Rule(
        "examples",
        forbidden=("components", "infra", "ops", "rehearsal", "policy", *PULUMI),
        why="the reference image holds the runtime only",
    ),
)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.folder)
def test_each_layer_imports_only_what_it_may(rule: Rule) -> None:
    assert rule.breaches() == [], rule.why


def test_the_rules_cover_every_package() -> None:
    covered = {r.folder.split("/")[0] for r in RULES}
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert packages | {"runtime", "examples"} <= covered


# ---- a name from the module that defines it ---------------------------------------------------


def module_file(module: str) -> Path | None:
    parts = module.split(".")
    base = (RUNTIME_SRC if parts[0] in RUNTIME else ROOT).joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The module's own statements, also those under ``if``/``try`` (not in functions)."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try):
            yield from module_level(node.body + node.orelse)
            if isinstance(node, ast.Try):
                for handler in node.handlers:
                    yield from module_level(handler.body)
                yield from module_level(node.finalbody)


@cache
def names_in(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(what the module defines or exports on purpose, what it merely imports). On purpose:
    listed in ``__all__``, or imported as ``name as name`` (the typing convention)."""
    defined: set[str] = set()
    imported: set[str] = set()
    for node in module_level(ast.parse(path.read_text()).body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                defined |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
                and isinstance(node.value, ast.List | ast.Tuple)
            ):
                defined |= {
                    e.value
                    for e in node.value.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                }
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.asname is not None and alias.asname == alias.name:
                    defined.add(alias.name)
                else:
                    imported.add(alias.asname or alias.name.split(".")[0])
    return frozenset(defined), frozenset(imported - defined)


def second_hand_imports() -> Iterator[str]:
    folders = [ROOT / p for p in PROJECT] + [RUNTIME_SRC, ROOT / "examples"]
    for folder in folders:
        for imp in imports_under(folder):
            source = module_file(imp.module) if within(imp.module, PROJECT + RUNTIME) else None
            if source is None:
                continue
            defined, merely_imported = names_in(source)
            for name in imp.names:
                submodule = module_file(f"{imp.module}.{name}")
                if name in merely_imported and name not in defined and submodule is None:
                    yield f"{imp.where()} imports {name}, which it only imports itself"


def test_names_come_from_the_module_that_defines_or_exports_them() -> None:
    assert list(second_hand_imports()) == []
