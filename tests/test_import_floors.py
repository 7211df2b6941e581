"""Imports run one way: no circles among tunelens's modules, and the arrows that once ran back up
(safety -> evaluate, suites -> the eval config, tiny -> loading, datasheet -> curate) stay gone.

Every import in a file counts, function-level and ``if TYPE_CHECKING:`` ones included. The two
registries that import their package's modules by name (eval suites, curation steps) get an arrow
from the package to each of its modules, since that is what ``all_suites()`` / ``all_steps()`` do.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
REGISTRIES = ("tunelens.evaluate.suites", "tunelens.data.steps", "tunelens.explain.methods")


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "tunelens").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name)
                if target and target != module:
                    graph[module].add(target)
    for registry in REGISTRIES:
        graph[registry] |= {m for m in modules if m.rpartition(".")[0] == registry}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
                    out.append(sorted(component))
    return out


def test_the_walk_sees_function_level_and_type_checking_imports():
    graph = _graph()
    assert "tunelens.models.tiny" in graph["tunelens.models.loading"]  # imported at module level
    assert "tunelens.evaluate.instruments" in graph["tunelens.evaluate.suites.builtin"]  # inside a method
    assert "tunelens.data.config" in graph["tunelens.data.datasheet"]  # under TYPE_CHECKING
    assert "tunelens.evaluate.suites.over_refusal" in graph["tunelens.evaluate.suites"]  # found by the registry


def test_no_import_circles():
    assert _circles(_graph()) == []


def test_the_arrows_that_ran_back_up_stay_gone():
    graph = _graph()

    def arrows(source_prefix: str, target_prefix: str) -> list[str]:
        return sorted(f"{m} -> {t}" for m, targets in graph.items() if m.startswith(source_prefix)
                      for t in targets if t.startswith(target_prefix))

    assert arrows("tunelens.safety", "tunelens.evaluate") == []
    assert arrows("tunelens.evaluate.suites", "tunelens.evaluate.config") == []
    assert arrows("tunelens.evaluate.suites", "tunelens.evaluate.runner") == []
    assert arrows("tunelens.evaluate.fewshot", "tunelens.evaluate.runner") == []
    assert arrows("tunelens.models.tiny", "tunelens.models.loading") == []
    assert arrows("tunelens.data.datasheet", "tunelens.data.curate") == []
    assert arrows("tunelens.data.steps", "tunelens.data.curate") == []
    assert arrows("tunelens.cards", "tunelens.pipeline") == []  # `tunelens card` is the pipeline's command


def test_stage_packages_import_only_downward():
    """The floors of docs/architecture.md: a stage never imports a stage drawn above it."""
    floor = {"records": 0, "errors": 0, "allocator": 0, "registry": 0, "progress": 0, "config_files": 1, "datafiles": 1, "checks": 1,
             "models": 2, "generate": 3, "export": 3, "safety": 3, "cards": 3,
             "data": 4, "suite": 4, "train": 4, "evaluate": 5, "explain": 6, "serve": 7, "pipeline": 7}
    graph = _graph()
    bad = []
    for m, targets in graph.items():
        src = m.split(".")[1] if m.count(".") else None
        for t in targets:
            dst = t.split(".")[1] if t.count(".") else None
            if src in floor and dst in floor and src != dst and floor[dst] > floor[src]:
                bad.append(f"{m} -> {t}")
    assert bad == []
