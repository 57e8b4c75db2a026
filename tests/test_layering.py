"""The package layering, read from the source (ast): imports go one way and no two modules import each other.

dsp imports nothing else of fxmix; model may import dsp; training may import dsp and model; host_bridge and
plugin_presets may import dsp and model; the ``fxmix`` command package may import everything. Every import
counts, at module top or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dsp", "model", "training", "host_bridge", "plugin_presets", "fxmix")
ALLOWED = {
    "dsp": set(),
    "model": {"dsp"},
    "training": {"dsp", "model"},
    "host_bridge": {"dsp", "model"},
    "plugin_presets": {"dsp", "model"},
    "fxmix": set(PACKAGES),
}


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name (without the ``fxmix.`` prefix, ``__init__`` as the package) -> file."""
    found = {}
    for pkg in PACKAGES:
        for f in (root / pkg).rglob("*.py"):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = f
    return found


def _target(node: ast.ImportFrom | ast.Import, alias: ast.alias, here: str, is_pkg: bool, modules) -> str | None:
    """The fxmix module an import reaches (the submodule when ``from pkg import submodule``), or None."""
    if isinstance(node, ast.Import):
        name = alias.name
    elif node.level:
        base = here.split(".") if is_pkg else here.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        name = ".".join(base + ([node.module] if node.module else []))
    else:
        name = node.module or ""
    if name.startswith("fxmix."):
        name = name[len("fxmix.") :]
    elif name != "fxmix" and name.split(".")[0] not in PACKAGES:
        return None
    if name == "fxmix":
        name = "fxmix"
    if isinstance(node, ast.ImportFrom) and f"{name}.{alias.name}" in modules:
        return f"{name}.{alias.name}"
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = _modules(root)
    graph = {}
    for mod, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    t = _target(node, alias, mod, path.name == "__init__.py", modules)
                    if t and t != mod:
                        edges.add(t)
        graph[mod] = edges
    return graph


def _wrong_way(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for mod, edges in graph.items():
        pkg = mod.split(".")[0]
        wrong += [f"{mod} -> {t}" for t in edges if t.split(".")[0] not in ALLOWED[pkg] | {pkg}]
    return sorted(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    cycles = []

    def visit(u: str, stack: list[str]) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                cycles.append(" -> ".join(stack[stack.index(v) :] + [v]))
            elif v not in state:
                visit(v, stack)
        stack.pop()
        state[u] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return cycles


def test_imports_follow_the_package_direction():
    wrong = _wrong_way(_graph())
    assert not wrong, "imports against the direction dsp <- model <- training:\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_find_a_wrong_way_import_and_a_cycle(tmp_path):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    (tmp_path / "dsp" / "bad.py").write_text("from fxmix.model import runtime\n")
    (tmp_path / "model" / "runtime.py").write_text("from fxmix.dsp import bad\n")
    (tmp_path / "model" / "ok.py").write_text("from ..dsp import bad\nimport numpy\n")
    graph = _graph(tmp_path)
    assert graph == {"dsp.bad": {"model.runtime"}, "model.runtime": {"dsp.bad"}, "model.ok": {"dsp.bad"}}
    assert _wrong_way(graph) == ["dsp.bad -> model.runtime"]
    assert _cycles(graph) == ["dsp.bad -> model.runtime -> dsp.bad"]
