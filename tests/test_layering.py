"""The floors of docs/architecture.md, enforced: no upward imports, no imports between siblings, no import cycles.

The import graph is read from the source (``ast``, every ``import`` including ones inside functions), so a lazy
import cannot hide a wrong-way arrow. A package missing from FLOORS fails too: a new package must be placed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import app

APP = Path(app.__file__).parent
CORE = APP / "core"

# Bottom to top; packages on one floor may not import each other. Same list as docs/architecture.md.
FLOORS: list[set[str]] = [
    {"core"},
    {"config"},
    {"tracking", "models", "plan"},
    {"data", "registry"},
    {"train"},
    {"launch"},
    {"eval", "ppo", "serve"},
    {"pipeline"},
    {"jobs_api"},
    {"commands", "console"},
    {"cli"},
]

# (importing module, imported package) -> why it is still allowed. Each one must still exist (see below), so a
# fixed exception is removed from this list rather than silently kept.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {
}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = APP) -> dict[str, set[str]]:
    """module -> modules of the same top-level package it imports (absolute imports only; the tree uses no others)."""
    top = root.name
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for target in found:
                if target.split(".")[0] != top:
                    continue
                while target not in modules and "." in target:  # `from app.x import func` -> app.x
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def package_of(module: str) -> str | None:
    """``app.train.run`` -> ``train``; ``app.cli`` -> ``cli``; the root package itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def floor_of(package: str, floors: list[set[str]]) -> int | None:
    return next((i for i, group in enumerate(floors) if package in group), None)


def layering_violations(graph: dict[str, set[str]], floors: list[set[str]] = FLOORS,
                        exceptions: dict[tuple[str, str], str] | None = None) -> list[str]:
    """One line per import that goes up a floor or sideways to a sibling package, or touches an unplaced package."""
    exceptions = KNOWN_EXCEPTIONS if exceptions is None else exceptions
    problems = []
    for src, targets in sorted(graph.items()):
        src_pkg = package_of(src)
        if src_pkg is None:
            continue
        src_floor = floor_of(src_pkg, floors)
        if src_floor is None:
            problems.append(f"{src}: package '{src_pkg}' is on no floor (add it to FLOORS and docs/architecture.md)")
            continue
        for dst in sorted(targets):
            dst_pkg = package_of(dst)
            if dst_pkg is None or dst_pkg == src_pkg or (src, dst_pkg) in exceptions:
                continue
            dst_floor = floor_of(dst_pkg, floors)
            if dst_floor is None:
                problems.append(f"{src} imports {dst}: package '{dst_pkg}' is on no floor")
            elif dst_floor > src_floor:
                problems.append(f"{src} (floor {src_floor}) imports {dst} (floor {dst_floor}): upward")
            elif dst_floor == src_floor:
                problems.append(f"{src} imports {dst}: '{src_pkg}' and '{dst_pkg}' are siblings on floor {src_floor}")
    return problems


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


# ---- the real tree -------------------------------------------------------------------------------------------

def test_every_package_is_on_a_floor():
    packages = {p.name for p in APP.iterdir() if (p / "__init__.py").is_file() or (p.is_dir() and any(p.glob("*.py")))}
    packages |= {p.stem for p in APP.glob("*.py") if p.stem != "__init__"}
    placed = set().union(*FLOORS)
    assert packages <= placed, f"unplaced packages: {sorted(packages - placed)}"


def test_no_upward_or_sideways_imports():
    problems = layering_violations(import_graph())
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    assert import_cycles(import_graph()) == []


def test_known_exceptions_are_still_needed():
    graph = import_graph()
    stale = [key for key in KNOWN_EXCEPTIONS
             if not any(package_of(dst) == key[1] for dst in graph.get(key[0], ()))]
    assert not stale, f"fixed: remove {stale} from KNOWN_EXCEPTIONS and docs/architecture.md"


# ---- the checker itself catches what it should -----------------------------------------------------------------

def test_planted_wrong_way_import_fails(tmp_path: Path):
    """A copy of the package with one upward import planted in app/core is reported, and with a cycle too."""
    root = tmp_path / "app"
    for src in APP.rglob("*.py"):
        dst = root / src.relative_to(APP)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    assert layering_violations(import_graph(root)) == []
    (root / "core" / "planted.py").write_text("def f():\n    from app.pipeline.run import run_pipeline\n")
    problems = layering_violations(import_graph(root))
    assert problems == ["app.core.planted (floor 0) imports app.pipeline.run (floor 7): upward"]


def test_synthetic_graphs():
    floors = [{"low"}, {"mid_a", "mid_b"}, {"top"}]
    ok = {"app.top.x": {"app.mid_a.y"}, "app.mid_a.y": {"app.low.z"}, "app.low.z": set()}
    assert layering_violations(ok, floors, {}) == []
    up = {**ok, "app.low.z": {"app.top.x"}}
    assert layering_violations(up, floors, {}) == ["app.low.z (floor 0) imports app.top.x (floor 2): upward"]
    assert import_cycles(up) == [["app.low.z", "app.mid_a.y", "app.top.x"]]
    sideways = {**ok, "app.mid_b.w": {"app.mid_a.y"}}
    assert "siblings" in layering_violations(sideways, floors, {})[0]
    unplaced = {**ok, "app.newpkg.m": set()}
    assert "on no floor" in layering_violations(unplaced, floors, {})[0]
    allowed = {("app.low.z", "top"): "why"}
    assert layering_violations(up, floors, allowed) == []


# ---- purity of the bottom floor, and house rules ----------------------------------------------------------------

def test_core_imports_without_ray():
    modules = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")
    code = (
        "import sys\n"
        "for blocked in ('ray', 'mlflow', 'fsspec', 'sqlalchemy', 'fastapi', 'requests'):\n"
        "    sys.modules[blocked] = None\n"
        "import importlib\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module('app.core.' + m)\n"
        "print('ok', len(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_no_grab_bag_modules():
    bad = [p for p in APP.rglob("*.py") if p.stem in {"utils", "helpers", "misc", "common_utils"}]
    assert not bad, f"grab-bag modules are not allowed: {bad}"


def test_benchmarks_use_the_installed_package():
    """Benchmarks import `app` like a user would: no sys.path edits, no test helpers."""
    bad = []
    for script in sorted((APP.parent / "benchmarks").glob("*.py")):
        text = script.read_text(encoding="utf-8")
        if "sys.path" in text or "from tests" in text or "import tests" in text:
            bad.append(script.name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n.split(".")[0] in {"conftest", "helpers", "tests"} for n in names):
                    bad.append(script.name)
    assert not bad, f"benchmarks editing sys.path or importing test helpers: {sorted(set(bad))}"
