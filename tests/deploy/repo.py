"""The repository's deployment files and the tools that check them.

The tools (deck, docker-compose, helm, kubernetes-validate) come from `make tools`; a check that
needs a missing one fails and says so, rather than skipping: CI installs them.
"""

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KONG_YML = ROOT / "gateway" / "kong.yml"
TOOL_DIRS = (ROOT / ".tools" / "bin", ROOT / ".venv" / "bin")


def find_tool(name: str) -> str:
    for directory in TOOL_DIRS:
        if (directory / name).is_file():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make tools`", pytrace=False)
    return found


def run_tool(name: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The tool's result (output captured as text); never raises on a non-zero exit."""
    kwargs.setdefault("timeout", 120)
    return subprocess.run([find_tool(name), *args], capture_output=True, text=True, **kwargs)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all_yaml(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kong_renderer() -> Any:
    """gateway/render.py, the renderer compose and the chart run before Kong (a script, not a
    package, so it is loaded from its path)."""
    spec = importlib.util.spec_from_file_location("kong_render", ROOT / "gateway" / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
