"""The package's layers: data flows one way, and no module imports itself back.

Each top-level part of `pinbase` sits in a layer and may import only from its own part and from
lower layers:

    domain < config < store < live < app < net < http | devices | mcp < server < demo < cli

`net` holds the connection-level defences the faces share (admission, rate-limited logging).
`http`, `devices` and `mcp` are faces side by side: none imports another.
`client` (the Python client of the API) is a part of its own, outside the layers: it imports no
other part of pinbase, and no other part imports it. Every import counts,
including those inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pinbase

PACKAGE = Path(pinbase.__file__).parent
LAYERS: list[set[str]] = [
    {"domain"},
    {"config"},
    {"store"},
    {"live"},
    {"app"},
    {"net"},
    {"http", "devices", "mcp"},
    {"server"},
    {"demo"},
    {"cli"},
    {"__main__"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}
APART = {"client"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    """The pinbase modules `path` imports (`from a import b` may name a module b)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("pinbase"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pinbase"):
            yield node.module
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if candidate in MODULES:
                    yield candidate


def part(module: str) -> str:
    names = module.split(".")
    return names[1] if len(names) > 1 else ""


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {module: sorted(set(imports(path)) - {module}) for module, path in MODULES.items()}


def all_imports() -> Iterator[tuple[str, str]]:
    """(module, imported name) for every import of every pinbase module."""
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                yield from ((module, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                yield module, node.module


def test_every_part_has_a_layer() -> None:
    parts = {part(module) for module in MODULES} - {""}
    placed = set(RANK) | APART
    assert parts <= placed, f"parts without a layer: {sorted(parts - placed)}"


def test_imports_only_go_down() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        source = part(module)
        for target in targets:
            goal = part(target)
            if not source or not goal or goal == source or APART & {source, goal}:
                continue
            if RANK[goal] >= RANK[source]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_parts_apart_import_only_themselves() -> None:
    """The client imports nothing of the server, and the server nothing of the client."""
    wrong = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if part(module) != part(target) and APART & {part(module), part(target)}
    ]
    assert not wrong, "imports across a part apart:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over the module graph: each must be one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH.get(module, ()):
            if target not in MODULES:
                continue
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in MODULES:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_domain_does_no_io_and_knows_no_framework() -> None:
    forbidden = ("fastapi", "starlette", "uvicorn", "asyncpg", "sqlite3", "asyncio", "socket")
    found = [
        f"{module}: {name}"
        for module, name in all_imports()
        if part(module) == "domain" and name.split(".")[0] in forbidden
    ]
    assert not found, found


def test_the_store_raises_only_its_own_errors_to_callers() -> None:
    """Nothing above the store imports a database driver to catch its exceptions."""
    drivers = ("sqlite3", "asyncpg")
    found = [
        f"{module}: {name}"
        for module, name in all_imports()
        if part(module) not in ("domain", "store") and name.split(".")[0] in drivers
    ]
    assert not found, found
