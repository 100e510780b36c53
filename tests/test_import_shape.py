"""The imports point one way: the library imports no service, a service imports no other
service, and no modules import each other (directly or around a longer circle)."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# package → its source folder, lowest layer first; each may import only the layers it names.
PACKAGES = {
    "hookhub": ROOT / "libs/hookhub/src/hookhub",
    "hub_api": ROOT / "hub-api/src/hub_api",
    "hookhub_consumers": ROOT / "consumers/src/hookhub_consumers",
    "hookhub_operator": ROOT / "operator/src/hookhub_operator",
    "hookhub_dev": ROOT / "dev/src/hookhub_dev",
}
MAY_IMPORT = {
    "hookhub": set(),
    "hub_api": {"hookhub"},
    "hookhub_consumers": {"hookhub"},
    "hookhub_operator": {"hookhub", "hookhub_consumers"},
    "hookhub_dev": {"hookhub", "hub_api", "hookhub_consumers", "hookhub_operator"},
}


def _modules() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            modules[name] = path
    return modules


def _imported(name: str, path: Path) -> set[str]:
    """Every module name an import statement of this file names (also lazy imports)."""
    package_parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package_parts[: len(package_parts) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found |= {target} | {f"{target}.{alias.name}" for alias in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    """Module → the project modules it imports (the longest known prefix of each name)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imported(name, path):
            parts = imported.split(".")
            prefixes = (".".join(parts[:i]) for i in range(len(parts), 0, -1))
            target = next((p for p in prefixes if p in modules), None)
            if target is not None and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


GRAPH = _graph()


def test_the_walk_sees_every_package_and_their_imports():
    assert {m.split(".")[0] for m in GRAPH} == set(PACKAGES)
    assert "hookhub.events" in GRAPH["hookhub_consumers.runtime"]  # a known edge


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_layers_below_it(package):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module.split(".")[0] == package
        for target in targets
        if target.split(".")[0] not in MAY_IMPORT[package] | {package}
    )
    assert wrong == []


def test_no_modules_import_each_other():
    try:
        TopologicalSorter(GRAPH).prepare()
    except CycleError as error:
        pytest.fail(f"modules import each other: {' -> '.join(error.args[1])}")
