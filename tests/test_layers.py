"""The import architecture of lib/: layers, lowest first, and no cycles.

The table `LAYERS` below is the single source of truth. Every `.py` file under lib/ is parsed
with `ast` (nothing is imported) and its imports of `lib.*` are collected, including imports
inside functions and `if` blocks: a lazy import is still a dependency. The tests fail when

- a module imports a module of a higher layer (same-layer and downward imports are fine),
- lib modules import each other in a cycle, or
- a module under lib/ (or a `lib.*` name imported) matches no pattern in `LAYERS`.

A pattern ending in ".*" matches a package and all its submodules; when several patterns match
a module, the most specific one (an exact name, else the longest prefix) decides its layer.
"""

import ast
from pathlib import Path

import pytest

LAYERS: list[tuple[str, list[str]]] = [
    ("support", ["lib", "lib.utils", "lib.plot"]),
    (
        "layers",
        [
            "lib.tokenizer",
            "lib.embedding",
            "lib.positions",
            "lib.rope",
            "lib.attention",
            "lib.norm",
            "lib.feedforward",
            "lib.blocks",
        ],
    ),
    ("models", ["lib.models.*"]),
    ("runtime", ["lib.data.*", "lib.generate", "lib.train.*", "lib.hf.*", "lib.gguf"]),
    ("entry points", ["lib.recipes", "lib.ablation", "lib.cli", "lib.train.__main__"]),
]

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib"


def module_name(path: Path) -> str:
    """`lib/models/gpt.py` -> `lib.models.gpt`; a package's `__init__.py` names the package."""
    parts = list(Path(path).resolve().relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    """Whether `name` is a module or package on disk (`lib/x.py` or `lib/x/__init__.py`)."""
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _is_lib(name: str) -> bool:
    return name == "lib" or name.startswith("lib.")


def lib_imports(path: Path) -> set[str]:
    """The `lib.*` modules that the file at `path` imports, anywhere in it, itself excluded.

    `from lib.x import y` counts as an import of `lib.x.y` when that is a module, else of `lib.x`;
    relative imports are resolved against the file's package.
    """
    path = Path(path)
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if _is_lib(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not _is_lib(base):
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base)
    found.discard(own)
    return found


def layer_of(module: str) -> tuple[int, str] | None:
    """(index, name) of the layer whose most specific pattern matches `module`, or None."""
    best: tuple[tuple[bool, int], int, str] | None = None
    for index, (layer, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if pattern.endswith(".*"):
                prefix = pattern[:-2]
                matches = module == prefix or module.startswith(prefix + ".")
                rank = (False, len(prefix))
            else:
                matches = module == pattern
                rank = (True, len(pattern))
            if matches and (best is None or rank > best[0]):
                best = (rank, index, layer)
    return None if best is None else (best[1], best[2])


def lib_graph() -> dict[str, set[str]]:
    """Every module under lib/ mapped to the lib modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(LIB.rglob("*.py")):
        graph.setdefault(module_name(path), set()).update(lib_imports(path))
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """One message per import of a higher layer; modules matching no pattern are skipped."""
    messages = []
    for module in sorted(graph):
        source = layer_of(module)
        for target in sorted(graph[module]):
            dest = layer_of(target)
            if source is None or dest is None or dest[0] <= source[0]:
                continue
            above = [f"the {name}" for name, _ in LAYERS[dest[0] :]]
            where = " or ".join([", ".join(above[:-1]), above[-1]] if len(above) > 1 else above)
            messages.append(
                f"{module} ({source[1]}, layer {source[0]}) imports {target} "
                f"({dest[1]}, layer {dest[0]}): a layer imports only its own layer or those "
                f"below; move the code that needs {target} up into {where}"
            )
    return messages


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """One cycle per strongly connected component of more than one module, as "a -> b -> a".

    Tarjan's algorithm finds the components; within each, a shortest cycle through its smallest
    module (by name) is reported.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)

    cycles = []
    for component in components:
        start = min(component)
        parent: dict[str, str] = {}
        frontier = [start]
        while start not in parent:
            next_frontier = []
            for node in frontier:
                for succ in sorted(graph.get(node, set()) & component):
                    if succ not in parent:
                        parent[succ] = node
                        next_frontier.append(succ)
            frontier = next_frontier
        path = [start]
        while len(path) == 1 or path[-1] != start:
            path.append(parent[path[-1]])
        cycles.append(" -> ".join(reversed(path)))
    return sorted(cycles)


def test_every_lib_module_has_a_layer():
    graph = lib_graph()
    names = set(graph).union(*graph.values())
    missing = sorted(name for name in names if layer_of(name) is None)
    assert not missing, "\n".join(f"add {m} to LAYERS in tests/test_layers.py" for m in missing)


def test_no_upward_imports():
    messages = upward_imports(lib_graph())
    assert not messages, "\n".join(messages)


def test_no_import_cycles():
    cycles = find_cycles(lib_graph())
    assert not cycles, "\n".join(f"import cycle: {cycle}" for cycle in cycles)


def test_checker_catches_violations():
    graph = {
        "lib.models.gpt": {"lib.train", "lib.blocks"},
        "lib.train": set(),
        "lib.attention": {"lib.blocks"},
        "lib.blocks": {"lib.feedforward"},
        "lib.feedforward": {"lib.attention"},
    }
    assert upward_imports(graph) == [
        "lib.models.gpt (models, layer 2) imports lib.train (runtime, layer 3): a layer imports "
        "only its own layer or those below; move the code that needs lib.train up into the "
        "runtime or the entry points"
    ]
    assert find_cycles(graph) == ["lib.attention -> lib.blocks -> lib.feedforward -> lib.attention"]


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("lib", "support"),
        ("lib.models", "models"),
        ("lib.models.gpt", "models"),
        ("lib.train", "runtime"),
        ("lib.train.loop", "runtime"),
        ("lib.train.__main__", "entry points"),
        ("lib.hf.gpt2", "runtime"),
        ("lib.cli", "entry points"),
    ],
)
def test_layer_of_prefers_the_most_specific_pattern(module, layer):
    assert layer_of(module)[1] == layer
