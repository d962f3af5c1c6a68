"""The shape of ``src/``, read from the source: imports run down the layers of DESIGN.md, no
module is over 600 lines, and no module imports a private (underscore) name of another module.

The checks parse every module with ``ast``; nothing is imported or executed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "skywire"

# Higher imports lower (or its own layer). ``debug`` sits just above ``cipher``: every layer may
# use it, and it uses nothing of ours but ``cipher``. The package root (``skywire``, which only
# holds the version) is importable from everywhere.
LAYERS: dict[str, float] = {
    "cli": 13,
    "testnet": 12,
    "visor": 11,
    "apps": 10,
    "proxy": 9,
    "services": 8,
    "router": 7,
    "routing": 6,
    "transport": 5,
    "dmsg": 4,
    "cxo": 3,
    "wire": 2,
    "debug": 1.5,
    "cipher": 1,
    "": 0,
}

MAX_LINES = 600


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    names: tuple[str, ...]  # names taken from it (``from x import a, b``)
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit_stmt(stmt, True)
                for stmt in child.orelse:
                    visit_stmt(stmt, type_only)
                continue
            visit_stmt(child, type_only)

    def visit_stmt(child: ast.AST, type_only: bool) -> None:
        if isinstance(child, ast.Import):
            for alias in child.names:
                found.append(Import(module, alias.name, (), child.lineno, type_only))
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (child.level - 1)]
                target = ".".join(base + ([child.module] if child.module else []))
            else:
                target = child.module or ""
            names = tuple(a.name for a in child.names)
            found.append(Import(module, target, names, child.lineno, type_only))
        visit(child, type_only)

    visit(tree, False)
    return found


ALL = _modules()
IMPORTS = [imp for module, path in ALL for imp in _imports(module, path)]


def _layer(dotted: str) -> str:
    parts = dotted.split(".")
    if len(parts) < 2:
        return ""
    return parts[1]


def test_every_package_has_a_layer() -> None:
    unknown = {_layer(m) for m, _ in ALL} - set(LAYERS)
    assert not unknown, f"add these packages to LAYERS (and DESIGN.md): {sorted(unknown)}"


def test_imports_run_down_the_layers() -> None:
    wrong = []
    for imp in IMPORTS:
        if not imp.target.startswith("skywire"):
            continue
        mine, theirs = _layer(imp.module), _layer(imp.target)
        if LAYERS[theirs] > LAYERS[mine]:
            wrong.append(f"{imp.module}:{imp.line} imports {imp.target} ({theirs} > {mine})")
    assert not wrong, "imports up the layers:\n" + "\n".join(wrong)


def test_debug_uses_nothing_of_ours_but_cipher() -> None:
    wrong = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in IMPORTS
        if _layer(imp.module) == "debug"
        and imp.target.startswith("skywire")
        and _layer(imp.target) not in ("debug", "cipher", "")
    ]
    assert not wrong, "\n".join(wrong)


def test_no_private_names_from_other_modules() -> None:
    wrong = []
    for imp in IMPORTS:
        if imp.target == "__future__":
            continue
        private_module = [p for p in imp.target.split(".") if p.startswith("_") and p != "__init__"]
        if private_module:
            wrong.append(f"{imp.module}:{imp.line} imports private module {imp.target}")
        for name in imp.names:
            if name.startswith("_") and not name.startswith("__"):
                wrong.append(f"{imp.module}:{imp.line} imports {imp.target}.{name}")
    assert not wrong, "private names imported:\n" + "\n".join(wrong)


# Standard library names documented as public API in spite of their underscore.
DOCUMENTED_UNDERSCORE = {"sys._current_frames"}


def test_no_private_attributes_of_imported_modules() -> None:
    """``from asyncio import transports`` then ``transports._FlowControlMixin`` is the same
    reach as importing the private name (also for classes imported from another module)."""
    wrong = []
    for module, path in ALL:
        tree = ast.parse(path.read_text(), str(path))
        aliases = {
            (a.asname or a.name).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for a in node.names
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            root = node
            chain = []
            while isinstance(root, ast.Attribute):
                chain.append(root.attr)
                root = root.value
            if not (isinstance(root, ast.Name) and root.id in aliases):
                continue
            private = [a for a in chain if a.startswith("_") and not a.startswith("__")]
            if f"{root.id}.{'.'.join(reversed(chain))}" in DOCUMENTED_UNDERSCORE:
                continue
            if private:
                wrong.append(f"{module}:{node.lineno} uses {root.id}.{'.'.join(reversed(chain))}")
    assert not wrong, "private attributes of modules used:\n" + "\n".join(sorted(set(wrong)))


@pytest.mark.parametrize(("module", "path"), ALL, ids=[m for m, _ in ALL])
def test_module_is_under_the_line_limit(module: str, path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by responsibility"
