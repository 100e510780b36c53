"""The imports point one way: the library imports no service, a service imports no other
service, and no modules import each other (directly or around a longer circle). Test code too:
shared test helpers are a package (`tests.support`), not conftest, and the scripts that run a hub
(chaos, bench) import no test module."""

import ast
import os
import tomllib
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).parent.parent
# package → its source folder, lowest layer first; each may import only the layers it names.
PACKAGES = {
    "hookhub": ROOT / "libs/hookhub/src/hookhub",
    "hub_api": ROOT / "hub-api/src/hub_api",
    "hookhub_eventlog": ROOT / "eventlog/src/hookhub_eventlog",
    "hookhub_consumers": ROOT / "consumers/src/hookhub_consumers",
    "hookhub_operator": ROOT / "operator/src/hookhub_operator",
    "hookhub_dev": ROOT / "dev/src/hookhub_dev",
}
MAY_IMPORT = {
    "hookhub": set(),
    "hub_api": {"hookhub"},
    "hookhub_eventlog": {"hookhub"},
    "hookhub_consumers": {"hookhub", "hookhub_eventlog"},
    "hookhub_operator": {"hookhub", "hookhub_eventlog"},
    "hookhub_dev": {
        "hookhub",
        "hub_api",
        "hookhub_eventlog",
        "hookhub_consumers",
        "hookhub_operator",
    },
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


def _distribution(package: str) -> dict:
    """The `[project]` table of the workspace member whose source folder holds `package`."""
    return tomllib.loads((PACKAGES[package].parents[1] / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_depends_on_exactly_the_workspace_layers_it_may_import(package):
    """What a package's pyproject declares is what its image installs: a service that needs
    another only for an import it may not make (the operator and the consumers) would carry it."""
    ours = {_distribution(name)["name"]: name for name in PACKAGES}
    declared = {Requirement(line).name for line in _distribution(package).get("dependencies", [])}

    assert {ours[name] for name in declared if name in ours} == MAY_IMPORT[package]


def test_no_modules_import_each_other():
    try:
        TopologicalSorter(GRAPH).prepare()
    except CycleError as error:
        pytest.fail(f"modules import each other: {' -> '.join(error.args[1])}")


# Folders that hold no code of ours: tools, environments and caches.
NOT_OURS = {".git", ".venv", ".tools", ".cache", ".ruff_cache", ".pytest_cache", "__pycache__"}
# Run outside pytest, where only what is importable from the root (`tests.support`) is there.
SCRIPTS = ("chaos", "bench")


def _our_files() -> list[Path]:
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in NOT_OURS]
        files += [Path(folder, name) for name in names if name.endswith(".py")]
    return files


def _imported_modules(path: Path) -> set[str]:
    """The modules a file's import statements name (also lazy ones); a relative import by the
    name it gives, without its dots."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.module:
                found.add(node.module)
            # `from . import conftest` names the module only among its names.
            found |= {alias.name for alias in node.names if alias.name == "conftest"}
    return found


IMPORTS = {path.relative_to(ROOT): _imported_modules(path) for path in _our_files()}
# Helpers that live in one test directory, on sys.path only while pytest runs that directory.
DIRECTORY_HELPERS = {
    path.stem
    for path in IMPORTS
    if "tests" in path.parts[:-1] and "support" not in path.parts and path.stem != "__init__"
}


def _is_test_module(module: str) -> bool:
    return any(part.startswith("test_") or part.endswith("_test") for part in module.split("."))


def test_the_walk_sees_tests_scripts_and_their_imports():
    assert "tests.support.senders" in IMPORTS[Path("chaos/load.py")]
    assert "tests.support.broker" in IMPORTS[Path("conftest.py")]
    assert not any(NOT_OURS & set(path.parts) for path in IMPORTS)
    assert {"operator_hub", "api_processes"} <= DIRECTORY_HELPERS


def test_no_file_imports_from_conftest():
    """conftest.py holds fixtures, which pytest hands to tests; helpers are in tests/support."""
    wrong = sorted(str(path) for path, modules in IMPORTS.items() if "conftest" in modules)
    assert wrong == []


@pytest.mark.parametrize("folder", SCRIPTS)
def test_chaos_and_bench_reach_test_code_only_through_tests_support(folder):
    """No test module, conftest or one directory's helpers: scripts that run a hub share the
    tests' helpers, never their tests (a test module's name is test_*.py or *_test.py)."""
    files = {path: modules for path, modules in IMPORTS.items() if path.parts[0] == folder}
    # bench's scripts import each other by bare name, as a test directory's helpers are.
    test_only = (DIRECTORY_HELPERS | {"conftest"}) - {path.stem for path in files}
    wrong = sorted(
        f"{path} imports {module}"
        for path, modules in files.items()
        for module in modules
        if _is_test_module(module)
        or module.split(".")[0] in test_only
        or (module.split(".")[0] == "tests" and not module.startswith("tests.support"))
    )
    assert wrong == []
