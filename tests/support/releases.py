"""Releases of Hookhub side by side: an earlier one built from this repository's history into a
virtualenv of its own, and the current one (the virtualenv running the tests), each running its
`hookhub` commands as real processes.

The earlier release is built once per commit with uv, from the lock file it shipped with, into
`.cache/releases/<commit>/` (gitignored) and reused by every later run. uv's own cache is shared
with the workspace's, so a build downloads nothing the workspace already has.
"""

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import HubProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
RELEASES_CACHE = REPO_ROOT / ".cache" / "releases"
# The release before this one: what an upgrade starts from. Move it on at each release.
PREVIOUS_RELEASE = "44a5ff4"
BUILD_TIMEOUT_S = 600
CLI_TIMEOUT_S = 60
# Wide enough that rich's tables (`hookhub dlq list`) never fold an event id.
CLI_COLUMNS = "250"
BUILT_MARKER = "built"


class ReleaseUnavailable(RuntimeError):
    """An earlier release cannot be built here; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Release:
    """One release's virtualenv, with its `hookhub` command."""

    name: str  # the commit, or "current"
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def start(self, args: list[str], env: dict[str, str], log_path: Path) -> HubProcess:
        """`hookhub <args>` of this release as a real process (see `ReleaseProcess`)."""
        return ReleaseProcess(self.python, args, env, log_path)

    def cli(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """`hookhub <args>` of this release, run to the end; its output as text."""
        return subprocess.run(
            [str(self.python), "-m", "hookhub.cli", *args],
            env={**env, "COLUMNS": CLI_COLUMNS},
            cwd=self.venv,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )


class ReleaseProcess(HubProcess):
    """A `HubProcess` run by a given release's interpreter, from its virtualenv's folder: the
    folder a command starts in goes first on `sys.path`, and the repository's must not shadow
    the release's packages."""

    def __init__(self, python: Path, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [str(python), "-m", "hookhub.cli", *args],
            env=env,
            cwd=python.parent.parent,
            stdout=self._log,
            stderr=self._log,
        )


def current() -> Release:
    """The release under test: the virtualenv this test session runs in."""
    return Release("current", Path(sys.prefix))


def built(commit: str) -> Release:
    """The release at `commit` of this repository, built once into `.cache/releases/<commit>`
    (keyed by the full commit id) and reused afterwards. Safe to call from several test sessions
    at once: one builds, the others wait for it."""
    full = _resolve(commit)
    home = RELEASES_CACHE / full
    release = Release(commit, home / "venv")
    RELEASES_CACHE.mkdir(parents=True, exist_ok=True)
    with _locked(RELEASES_CACHE / f"{full}.lock"):
        if _built_marker(home) == full:
            return release
        shutil.rmtree(home, ignore_errors=True)  # what an interrupted build left
        _build(full, home)
        (home / BUILT_MARKER).write_text(full + "\n")
    return release


def _built_marker(home: Path) -> str | None:
    # Written last, so a build interrupted halfway is never taken for a finished one.
    marker = home / BUILT_MARKER
    return marker.read_text().strip() if marker.exists() else None


def _resolve(commit: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ReleaseUnavailable(
            f"commit {commit} is not in this clone's history (a shallow clone?): "
            "`git fetch --unshallow` brings it"
        )
    return result.stdout.strip()


def uv_command() -> str:
    """uv as `make install` finds it: on PATH, else the repository's private copy."""
    for candidate in (shutil.which("uv"), REPO_ROOT / ".tools" / "uv" / "bin" / "uv"):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ReleaseUnavailable("uv is neither on PATH nor in .tools/uv: run `make install`")


def _build(commit: str, home: Path) -> None:
    """The release's workspace, as `git archive` gives it, synced from its own lock file into
    `home/venv`: its services only (no dev tools), installed as packages, not as links to the
    sources, which are then removed."""
    uv = uv_command()
    sources = home / "src"
    sources.mkdir(parents=True)
    archive = home / "src.tar"
    subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", "-o", str(archive), commit],
        check=True,
        capture_output=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(sources, filter="data")
    archive.unlink()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT")}
    env["UV_PROJECT_ENVIRONMENT"] = str(home / "venv")
    result = subprocess.run(
        [
            uv,
            "sync",
            "--locked",
            "--no-dev",
            "--no-editable",
            "--python",
            os.path.realpath(sys.executable),  # the tests' interpreter: no download
        ],
        cwd=sources,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise ReleaseUnavailable(f"building release {commit} failed:\n{result.stderr[-3000:]}")
    shutil.rmtree(sources)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
