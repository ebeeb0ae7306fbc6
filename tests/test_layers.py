"""The import layering of docs/ARCHITECTURE.md holds: no import runs up a layer, none closes a circle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "selfnas"


def read_layers(doc: Path = ROOT / "docs" / "ARCHITECTURE.md") -> dict[str, int]:
    """``{"errors": 1, "render": 2, ...}`` from the numbered list of the architecture doc."""
    layers: dict[str, int] = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        m = re.match(r"(\d+)\. (.*)", line)
        if m:
            for name in re.findall(r"`([\w.]+)`", m.group(2).split(" — ")[0]):
                layers[name] = int(m.group(1))
    return layers


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(package: Path) -> dict[str, set[str]]:
    """Module -> the selfnas modules it imports anywhere in its file (functions included)."""
    files = {module_name(p, package): p for p in package.rglob("*.py")}

    def resolve(name: str) -> str:
        while name not in files and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "selfnas":
                targets |= {resolve(f"{node.module}.{a.name}") for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.split(".")[0] == "selfnas"}
        graph[name] = targets - {name, "selfnas"}  # the package root is only the facade above all
    return graph


def layer_of(module: str, layers: dict[str, int]) -> int:
    """The layer of the longest listed prefix; the package root sits above every layer."""
    if module == "selfnas":
        return max(layers.values()) + 1
    parts = module.split(".")[1:]
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in layers:
            return layers[".".join(parts[:n])]
    raise AssertionError(f"{module} is in no layer of docs/ARCHITECTURE.md: add it to the list")


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    return sorted(
        f"{a} (layer {layer_of(a, layers)}) imports {b} (layer {layer_of(b, layers)})"
        for a, targets in graph.items()
        for b in targets
        if layer_of(b, layers) > layer_of(a, layers)
    )


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer_and_imports_only_down() -> None:
    layers = read_layers()
    assert len(set(layers.values())) >= 10, layers
    assert upward_imports(imports(PACKAGE), layers) == []


def test_no_import_circles() -> None:
    assert circles(imports(PACKAGE)) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "selfnas"


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path: Path) -> None:
    package = _write(
        tmp_path,
        {
            "selfnas/__init__.py": "",
            "selfnas/errors.py": "",
            "selfnas/data/__init__.py": "",
            "selfnas/data/load.py": "def f():\n    from selfnas.models.net import Net  # up\n",
            "selfnas/models/__init__.py": "",
            "selfnas/models/net.py": "from selfnas.models import head\nNet = 1\n",
            "selfnas/models/head.py": "from selfnas.models.net import Net\n",
        },
    )
    layers = {"errors": 1, "data": 3, "models": 4}
    graph = imports(package)
    assert upward_imports(graph, layers) == [
        "selfnas.data.load (layer 3) imports selfnas.models.net (layer 4)"
    ]
    assert circles(graph) == [["selfnas.models.head", "selfnas.models.net"]]
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("selfnas.unlisted", layers)
