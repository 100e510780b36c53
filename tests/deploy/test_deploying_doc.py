"""docs/deploying.md against the files it describes: the Helm Secret its snippet creates holds every
key the chart reads from it, so Kong's renderer (gateway/render.py) finds every key kong.yml asks
for; and its Kong key table names every caller of gateway/kong.yml, with the group it is in and
where its key goes, as the routes take it and as the provider table says. Each check is also run
on a broken copy to show that it fails."""

import os
import re
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from hookhub.providers import PROVIDERS

from .chart import CHART, manifests_of, render
from .repo import KONG_YML, ROOT, kong_renderer, load_yaml

DOC = ROOT / "docs" / "deploying.md"
SECRET_SNIPPET_STARTS = "kubectl create namespace hookhub\n"
KEY_TABLE_SECTION = "## Kong: keys and routes"
# A kubectl that runs nothing: it appends its arguments to $KUBECTL_RECORD, each followed by NUL,
# and a newline (alone, then NUL) after each call.
RECORDING_KUBECTL = """#!/bin/sh
for arg in "$@"; do printf '%s\\0' "$arg"; done >> "$KUBECTL_RECORD"
printf '\\n\\0' >> "$KUBECTL_RECORD"
"""

render_kong = kong_renderer()


def shell_block(text: str, starts: str) -> str:
    """The body of the ```sh block whose first line is `starts`."""
    (body,) = [b for b in re.findall(r"(?ms)^```sh\n(.*?)^```$", text) if b.startswith(starts)]
    return body


# --- the Helm Secret ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    name: str
    data: dict[str, str] = field(default_factory=dict)

    def without(self, key: str) -> "Secret":
        return replace(self, data={k: v for k, v in self.data.items() if k != key})


def run_secret_snippet(snippet: str, tmp_path: Path) -> Secret:
    """Run the snippet from the repository root, as the doc says, with a kubectl that only records
    what it is asked; the Secret it would have created."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(RECORDING_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    record = tmp_path / "kubectl.args"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env["KUBECTL_RECORD"] = str(record)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", snippet],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    calls = [call.split("\0")[:-1] for call in record.read_text().split("\n\0") if call]
    (create,) = [c for c in calls if c[2:5] == ["create", "secret", "generic"]]
    literals = [
        a.removeprefix("--from-literal=") for a in create if a.startswith("--from-literal=")
    ]
    return Secret(create[5], dict(literal.split("=", 1) for literal in literals))


def secret_refs(node: Any) -> list[dict[str, Any]]:
    """Every secretKeyRef in a manifest, however deep."""
    if isinstance(node, dict):
        found = [node["secretKeyRef"]] if "secretKeyRef" in node else []
        return found + [ref for value in node.values() for ref in secret_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in secret_refs(value)]
    return []


def secret_misses(secret: Secret, manifests: list[dict[str, Any]]) -> list[str]:
    """What the chart's pods need from the Secret and it lacks (a pod without a key it needs,
    not optional, never starts)."""
    existing = load_yaml(CHART / "values.yaml")["existingSecret"]
    if secret.name != existing:
        return [f"the snippet creates the Secret {secret.name!r}, the chart reads {existing!r}"]
    needed = {
        ref["key"]
        for manifest in manifests
        for ref in secret_refs(manifest)
        if ref["name"] == existing and not ref.get("optional")
    }
    return [
        f"{key}: the chart needs it, the snippet does not create it"
        for key in sorted(key for key in needed if not secret.data.get(key))
    ]


def kong_render_misses(secret: Secret, manifests: list[dict[str, Any]]) -> list[str]:
    """Kong's init container runs gateway/render.py with the environment the chart gives it, read
    from the Secret: what the renderer refuses (and Kong then never starts)."""
    (init,) = [
        container
        for manifest in manifests
        if manifest["kind"] == "Deployment"
        for container in manifest["spec"]["template"]["spec"].get("initContainers", [])
        if container["name"] == "render-config"
    ]
    env = {}
    for variable in init["env"]:
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            env[variable["name"]] = variable["value"]
        elif ref["name"] == secret.name and secret.data.get(ref["key"]):
            env[variable["name"]] = secret.data[ref["key"]]
    try:
        render_kong.render(KONG_YML.read_text(), env)
    except render_kong.RenderError as error:
        return [str(error)]
    return []


@pytest.fixture(scope="module")
def chart_manifests() -> list[dict[str, Any]]:
    return manifests_of(render())


@pytest.fixture(scope="module")
def doc_secret(tmp_path_factory: pytest.TempPathFactory) -> Secret:
    snippet = shell_block(DOC.read_text(), SECRET_SNIPPET_STARTS)
    return run_secret_snippet(snippet, tmp_path_factory.mktemp("secret"))


def test_the_helm_secret_snippet_creates_every_key_the_chart_needs(
    doc_secret: Secret, chart_manifests: list[dict[str, Any]]
) -> None:
    assert secret_misses(doc_secret, chart_manifests) == []


def test_kong_renders_its_config_from_the_helm_secret_snippet(
    doc_secret: Secret, chart_manifests: list[dict[str, Any]]
) -> None:
    assert kong_render_misses(doc_secret, chart_manifests) == []


@pytest.mark.parametrize(
    "key",
    [
        "DECK_KEY_TWILIO",
        "DECK_KEY_OPERATOR_READONLY",
    ],
)
def test_a_secret_without_a_kong_key_is_caught(
    doc_secret: Secret, chart_manifests: list[dict[str, Any]], key: str
) -> None:
    broken = doc_secret.without(key)
    assert any(key in problem for problem in secret_misses(broken, chart_manifests))
    assert any(key in problem for problem in kong_render_misses(broken, chart_manifests))


def test_a_secret_without_the_store_url_is_caught(
    doc_secret: Secret, chart_manifests: list[dict[str, Any]]
) -> None:
    problems = secret_misses(doc_secret.without("HOOKHUB_STORE_URL"), chart_manifests)
    assert problems == ["HOOKHUB_STORE_URL: the chart needs it, the snippet does not create it"]


def test_a_secret_under_another_name_is_caught(
    doc_secret: Secret, chart_manifests: list[dict[str, Any]]
) -> None:
    assert secret_misses(replace(doc_secret, name="hookhub-keys"), chart_manifests)
    assert kong_render_misses(replace(doc_secret, name="hookhub-keys"), chart_manifests)


def test_the_snippet_as_it_was_before_the_fix_is_caught(
    chart_manifests: list[dict[str, Any]], tmp_path: Path
) -> None:
    # issue 19: the loop named 12 callers of the 20, and Kong never started
    callers = "JENKINS STOREFRONT WORKSHOP STRIPE GITHUB STANDARDWEBHOOKS HMAC MERCADOPAGO HOTMART"
    old_loop = (
        f"  $(for caller in {callers} KIWIFY OPERATOR OPERATOR_READONLY; do\n"
        '      printf -- \'--from-literal=DECK_KEY_%s=%s \' "$caller" "$(openssl rand -hex 24)"; '
        "done)\n"
    )
    snippet = shell_block(DOC.read_text(), SECRET_SNIPPET_STARTS)
    loop = re.search(r"(?ms)^  \$\(for .*?done\)\n", snippet)
    assert loop, "the snippet has no loop over the Kong keys"
    old = run_secret_snippet(snippet.replace(loop[0], old_loop), tmp_path)
    assert len(secret_misses(old, chart_manifests)) == 8
    assert kong_render_misses(old, chart_manifests)


# --- the Kong key table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    group: str | None  # the group the table names for it, if it names one
    key_in_query: bool


def key_table(doc: str) -> dict[str, Caller]:
    """The callers the table names: in its first column each caller is `name`, and a
    `(group `g`)` after one or more callers is their group; its third column says where their
    key goes."""
    section = doc.split(KEY_TABLE_SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    table: dict[str, Caller] = {}
    for row in rows:
        where = row[2].strip(" |")
        assert where.startswith(("query string", "header")), row
        pending: list[str] = []
        for group, name in re.findall(r"\(group `([^`]+)`\)|`([^`]+)`", row[0].strip("| ")):
            if name:
                pending.append(name)
                table[name] = Caller(None, where.startswith("query string"))
            else:
                table.update({n: replace(table[n], group=group) for n in pending})
                pending = []
    return table


def kong_callers(config: dict[str, Any]) -> dict[str, Caller]:
    """Each Kong consumer of gateway/kong.yml, its group and where the routes it opens take its
    key."""
    routes = [route for service in config["services"] for route in service.get("routes", [])]
    callers: dict[str, Caller] = {}
    for consumer in config["consumers"]:
        (group,) = [acl["group"] for acl in consumer["acls"]]
        in_query = set()
        for route in routes:
            plugins = {p["name"]: p.get("config", {}) for p in route.get("plugins", [])}
            if group in plugins.get("acl", {}).get("allow", []):
                in_query.add(plugins["key-auth"]["key_in_query"])
        assert len(in_query) == 1, (consumer["username"], in_query)
        callers[consumer["username"]] = Caller(group, in_query.pop())
    return callers


def key_table_disagreements(table: dict[str, Caller], config: dict[str, Any]) -> list[str]:
    kong = kong_callers(config)
    problems = [f"{name}: in gateway/kong.yml, not in the table" for name in kong.keys() - table]
    problems += [f"{name}: in the table, not in gateway/kong.yml" for name in table.keys() - kong]
    for name in sorted(table.keys() & kong.keys()):
        if table[name].group not in (None, kong[name].group):
            problems.append(f"{name}: group {table[name].group}, kong.yml {kong[name].group}")
        if table[name].key_in_query != kong[name].key_in_query:
            problems.append(f"{name}: key_in_query {table[name].key_in_query} in the table")
    for name, provider in PROVIDERS.items():
        if name in table and table[name].key_in_query != provider.key_in_query:
            problems.append(f"{name}: key_in_query {provider.key_in_query} in PROVIDERS")
    return problems


def test_the_kong_key_table_names_every_caller_and_where_its_key_goes() -> None:
    table = key_table(DOC.read_text())
    assert set(PROVIDERS) <= set(table)
    assert key_table_disagreements(table, load_yaml(KONG_YML)) == []


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        pytest.param(
            lambda doc: re.sub(r", `twilio`", "", doc, count=1),
            "twilio: in gateway/kong.yml, not in the table",
            id="a provider left out",
        ),
        pytest.param(
            lambda doc: doc.replace("`standardwebhooks`, `hmac`", "`hmac`", 1).replace(
                "`stripe`, `github`", "`stripe`, `standardwebhooks`, `github`", 1
            ),
            "standardwebhooks: key_in_query True in the table",
            id="a header provider listed with the query-string ones",
        ),
        pytest.param(
            lambda doc: doc.replace("(group `internal-events`)", "(group `operators`)", 1),
            "jenkins: group operators, kong.yml internal-events",
            id="the wrong group",
        ),
        pytest.param(
            lambda doc: doc.replace("`workshop` (group", "`workshop`, `billing` (group", 1),
            "billing: in the table, not in gateway/kong.yml",
            id="a caller Kong does not have",
        ),
    ],
)
def test_a_wrong_kong_key_table_is_caught(broken: Any, expected: str) -> None:
    table = key_table(broken(DOC.read_text()))
    assert expected in key_table_disagreements(table, load_yaml(KONG_YML))
