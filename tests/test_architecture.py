"""The architecture's floors, read from the imports (docs/architecture.md): no module imports from
a higher floor, no import cycle among modules, no module over 400 lines. Every ``import`` of a
``critical`` module counts, at the top of a file or inside a function."""

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "critical"

#: top-level module or package of ``critical`` -> its floor (docs/architecture.md)
FLOORS = {
    # 0: shared plain Python: argument checks, file writes, run-directory files, errors, the
    # fixed choices, the registry of metric callbacks, how callbacks find each other
    "critical": 0,
    "validation": 0,
    "io": 0,
    "runfiles": 0,
    "cli_errors": 0,
    "choices": 0,
    "_registry": 0,
    "_find": 0,
    "_rng": 0,
    # 1: computations without Lightning (tensors or plain Python), and the readers of run
    # directories
    "metrics": 1,
    "detector": 1,
    "robustness": 1,
    "accounting": 1,
    "saving_check": 1,
    "summary": 1,
    "_summary_text": 1,
    "schedules": 1,
    "report": 1,
    "sweep": 1,
    # 2: data, models and the LightningModule
    "data": 2,
    "models": 2,
    "task": 2,
    # 3: the Lightning callbacks
    "callbacks": 3,
    # 4: the command
    "cli": 4,
    "cli_help": 4,
}

MAX_LINES = 400
#: modules over MAX_LINES, each for a reason; shrink this list, never grow it
OVER_MAX: set[str] = set()  # none today; shrink it, never grow it


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the ``critical`` modules it imports (``from p import name``: the submodule
    ``p.name`` when there is one, else ``p``)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    sub = f"{origin}.{alias.name}"
                    targets.append(sub if sub in mods else origin)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            edges[mod].update(t for t in targets if t in mods and t != mod)
    return edges


def _floor(mod: str) -> int:
    parts = mod.split(".")
    top = parts[1] if len(parts) > 1 else "critical"
    assert top in FLOORS, f"{mod}: add its top-level name to FLOORS and to docs/architecture.md"
    return FLOORS[top]


def test_no_module_imports_from_a_higher_floor():
    mods = _modules()
    upward = [
        f"{mod} (floor {_floor(mod)}) imports {target} (floor {_floor(target)})"
        for mod, targets in sorted(_imports(mods).items())
        for target in sorted(targets)
        if _floor(target) > _floor(mod)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    mods = _modules()
    edges = _imports(mods)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for mod in sorted(mods):
        if mod not in index:
            visit(mod)
    assert not cycles, cycles


def test_no_module_over_400_lines():
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    over = {name: n for name, n in sorted(sizes.items()) if n > MAX_LINES and name not in OVER_MAX}
    assert not over, f"over {MAX_LINES} lines: {over} (split along a seam)"
    assert OVER_MAX <= set(sizes), sorted(OVER_MAX - set(sizes))


def test_each_module_says_what_it_owns():
    """A module's docstring is its first statement (its first line says what it owns)."""
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.stat().st_size
        and ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) is None
    ]
    assert not missing, missing
