"""The layers of ../shared/DESIGN.md ("Layers"), read from the source's own imports.

Every `import` and `from ... import` in src/kvmready (at module level or
inside functions: a lazy import is still an arrow) is an arrow from one
module to another.  Each module belongs to one layer; an arrow into a layer
that its layer may not import fails, and so does any import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "kvmready"

# Longest prefix wins: `kvmready.render.table` is in `render`.
LAYER_OF: Dict[str, str] = {
    "kvmready.cli": "cli",
    "kvmready.cli_common": "cli",
    "kvmready.cli_integrations": "cli",
    "kvmready._entry": "cli",
    "kvmready.__main__": "cli",
    "kvmready.outfile": "cli",
    "kvmready.orchestration": "orchestration",
    "kvmready.runner": "orchestration",
    "kvmready.summary": "orchestration",
    "kvmready.render": "render",
    "kvmready.checks": "checks",
    "kvmready.targets": "checks",
    "kvmready.facts": "facts",
    "kvmready.kvmapi": "kvmapi",
    "kvmready.host": "host",
    "kvmready.snapshot": "host",
    "kvmready.fleet": "fleet",
    # Shared data every layer may read: the result model, KVM's constants, VMware's capability table, text hygiene.
    "kvmready": "model",
    "kvmready.model": "model",
    "kvmready.kvmabi": "model",
    "kvmready.cpuvendors": "model",
    "kvmready.vmware_caps": "model",
    "kvmready.text": "model",
    "kvmready.schema": "model",
    "kvmready.schemas": "model",
}

MAY_IMPORT: Dict[str, Set[str]] = {
    "cli": {"cli", "orchestration", "render", "fleet", "model"},
    "orchestration": {"orchestration", "checks", "facts", "host", "render", "model"},
    "render": {"render", "fleet", "model"},  # a renderer sees only the report (and a fleet summary)
    "checks": {"checks", "facts", "model"},  # checks read facts, never files or devices
    "facts": {"facts", "host", "kvmapi", "model"},
    "kvmapi": {"kvmapi", "model"},
    "host": {"host", "model"},  # the archive reader only reads bytes
    "fleet": {"fleet", "model"},  # reports in, a summary out
    "model": {"model"},
}

# DESIGN.md's "Never" list, quoted so that a failure names the rule it breaks.
NEVER: List[Tuple[str, str]] = [
    ("checks", "host"), ("checks", "kvmapi"),
    ("render", "facts"), ("render", "host"), ("render", "checks"),
    ("facts", "checks"),
    ("host", "facts"), ("host", "orchestration"),
    ("model", "cli"),
    ("fleet", "facts"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: Dict[str, Path] = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> str:
    candidates = [prefix for prefix in LAYER_OF if module == prefix or module.startswith(prefix + ".")]
    assert candidates, f"{module} belongs to no layer: add it to LAYER_OF"
    return LAYER_OF[max(candidates, key=len)]


def imports_of(module: str) -> Iterator[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from kvmready.checks import cpu` is an arrow to the submodule, not to the package.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "kvmready" or target.startswith("kvmready."):
                yield target


def arrows() -> Set[Tuple[str, str]]:
    return {(module, target) for module in MODULES for target in imports_of(module) if target != module}


def test_the_import_reader_sees_the_arrows_that_exist():
    found = arrows()
    assert ("kvmready.cli", "kvmready.orchestration") in found  # a lazy import inside a command
    assert ("kvmready.checks", "kvmready.checks.cpu") in found  # `from kvmready.checks import (cpu, ...)`
    assert ("kvmready.facts.live", "kvmready.kvmapi") in found
    assert len(found) > 100


def test_every_module_belongs_to_a_layer():
    for module in MODULES:
        assert layer_of(module) in MAY_IMPORT


def test_no_arrow_the_layers_forbid():
    wrong = []
    for module, target in sorted(arrows()):
        source_layer, target_layer = layer_of(module), layer_of(target)
        if target_layer not in MAY_IMPORT[source_layer]:
            rule = " (DESIGN.md: never)" if (source_layer, target_layer) in NEVER else ""
            wrong.append(f"{module} ({source_layer}) imports {target} ({target_layer}){rule}")
    assert not wrong, "\n".join(wrong)


def test_the_never_list_is_part_of_the_matrix():
    for source_layer, target_layer in NEVER:
        assert target_layer not in MAY_IMPORT[source_layer]


def test_no_import_cycles():
    graph: Dict[str, Set[str]] = {module: set() for module in MODULES}
    for module, target in arrows():
        if target in graph:
            graph[module].add(target)
    cycles = [component for component in _strongly_connected(graph) if len(component) > 1]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def _strongly_connected(graph: Dict[str, Set[str]]) -> List[Set[str]]:
    """Tarjan's algorithm, iteratively."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[Set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert {"a", "b", "c"} in _strongly_connected(graph)
