"""The package's layering (docs/architecture.md): imports between sub-packages point down only, with no circle.

Reads every `import` in divqat_tvm/ (module level and inside functions, TYPE_CHECKING included) with `ast`,
maps each to its layer and fails on an import of a higher layer, and on any import circle between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "divqat_tvm"

#: bottom to top; a module may import its own layer or any layer below it, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "fileio", "resources", "targets", "toolchain"),
    ("data", "models"),
    ("quant", "defenses"),
    ("train",),
    ("compiler",),
    ("device",),
    ("oracle",),
    ("attacks",),
    ("report",),
    ("experiment",),
    ("cli", "__main__"),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _drop_type_checking(tree: ast.Module) -> ast.Module:
    """Remove `if TYPE_CHECKING:` blocks: annotation-only imports never run, so they cannot close a circle."""
    for node in ast.walk(tree):
        for field in ("body", "orelse"):
            stmts = getattr(node, field, None)
            if isinstance(stmts, list):
                setattr(node, field, [st for st in stmts if not _is_type_checking(st)])
    return tree


def _is_type_checking(st: ast.stmt) -> bool:
    return isinstance(st, ast.If) and "TYPE_CHECKING" in ast.unparse(st.test)


def _imports(path: Path, runtime_only: bool = False) -> set[str]:
    """Fully qualified divqat_tvm modules (or packages) that `path` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    if runtime_only:
        tree = _drop_type_checking(tree)
    here = _module_name(path).split(".")
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("divqat_tvm"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_pkg else here[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("divqat_tvm"):
                subs = {f"{mod}.{a.name}" for a in node.names} & MODULES  # `from pkg import module`
                found.update(subs or {mod})
    return found


FILES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
MODULES = set(FILES)


def _graph(runtime_only: bool = False) -> dict[str, set[str]]:
    return {m: {i for i in _imports(p, runtime_only) if i in MODULES and i != m} for m, p in FILES.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_subpackage_has_a_layer() -> None:
    tops = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    tops.discard("__init__")
    assert tops - set(RANK) == set(), "add the new sub-package to LAYERS here and to docs/architecture.md"


def test_no_upward_import() -> None:
    upward = []
    for mod, deps in _graph().items():
        src = _layer(mod)
        if src == "__init__":
            continue
        for dep in deps:
            dst = _layer(dep)
            if dst != "__init__" and RANK[dst] > RANK[src]:
                upward.append(f"{mod} -> {dep}")
    assert upward == [], "imports pointing up the layers:\n" + "\n".join(sorted(upward))


def test_no_import_circle() -> None:
    graph = _graph(runtime_only=True)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == [], "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", ["divqat_tvm.report.footprint", "divqat_tvm.report.render"])
def test_report_only_renders(module: str) -> None:
    """report/ turns JSON into pages: it never reaches the device, the oracle or the experiment runner."""
    deps = _graph()[module]
    assert not {d for d in deps if _layer(d) in ("device", "oracle", "experiment", "compiler")}
