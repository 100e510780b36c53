"""values.schema.json: Helm checks every install, upgrade, template and lint against it, so a
misspelt key, a wrong type or a value out of its set stops the release with the place named,
instead of rendering something quietly wrong."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from .chart import ALL_FEATURES, CHART, helm_template
from .repo import run_tool

SCHEMA = CHART / "values.schema.json"
# Objects whose keys are the user's own (labels, annotations, selectors, settings...), not ours.
OPEN_OBJECTS = {
    "global",
    "podSelector",
    "namespaceSelector",
    "labelSelector",
    "nodeAffinity",
    "podAffinity",
    "podAntiAffinity",
}


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())


def test_the_schema_is_draft_07_and_the_defaults_and_every_option_meet_it() -> None:
    validator = Draft7Validator(schema())
    Draft7Validator.check_schema(schema())
    assert schema()["$schema"] == "http://json-schema.org/draft-07/schema#"
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert [e.message for e in validator.iter_errors(defaults)] == []
    all_features = merged(defaults, yaml.safe_load(ALL_FEATURES.read_text()))
    assert [e.message for e in validator.iter_errors(all_features)] == []


def merged(base: Any, override: Any) -> Any:
    """A values file over the defaults, as Helm merges them: maps merge, the rest is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{key: merged(base.get(key), value) for key, value in override.items()}}
    return override


def objects(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from objects(value, f"{path}/{index}")


def open_objects(tree: dict[str, Any]) -> list[str]:
    """Where the schema describes an object of ours but lets unknown keys through."""
    return [
        path
        for path, node in objects(tree)
        if node.get("additionalProperties") is not False
        and path.rsplit("/", 1)[-1] not in OPEN_OBJECTS
    ]


def test_every_object_of_ours_refuses_unknown_keys() -> None:
    assert open_objects(schema()) == []


def test_an_object_left_open_is_caught() -> None:
    loose = schema()
    del loose["properties"]["kong"]["properties"]["service"]["additionalProperties"]
    assert open_objects(loose) == ["/properties/kong/properties/service"]


def test_the_schema_describes_every_default_value() -> None:
    """Each key in values.yaml has its place in the schema (a strict parent would refuse an
    undescribed one: this names it)."""

    def undescribed(values: Any, node: dict[str, Any], path: str) -> list[str]:
        node = resolve(node)
        if not isinstance(values, dict) or "properties" not in node:
            return []
        found = []
        for key, value in values.items():
            if key in node["properties"]:
                found += undescribed(value, node["properties"][key], f"{path}.{key}")
            elif not node.get("additionalProperties"):
                found.append(f"{path}.{key}")
        return found

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = schema()["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        return node

    assert undescribed(yaml.safe_load((CHART / "values.yaml").read_text()), schema(), "") == []


TYPOS = [
    pytest.param(
        "kong.pdb.minAvaliable=1", "additional properties 'minAvaliable'", id="unknown-key"
    ),
    pytest.param(
        "hubApi.nodeSelectr.zone=a",
        "additional properties 'nodeSelectr'",
        id="unknown-key-in-a-new-option",
    ),
    pytest.param("kong.pdb.minAvailable=lots", "/kong/pdb/minAvailable", id="wrong-type"),
    pytest.param(
        "consumers.keda.maxReplicas=ten", "/consumers/keda/maxReplicas", id="wrong-type-number"
    ),
    pytest.param("kong.service.type=LoadBalancr", "value must be one of", id="bad-enum"),
    pytest.param("image.pullPolicy=IfNotPresnt", "value must be one of", id="bad-enum-pull-policy"),
    pytest.param("kong.uid=1000", "/kong/uid", id="kong-as-uid-1000"),
    pytest.param(
        "image.digest.hookhub-api=sha256:abc", "/image/digest/hookhub-api", id="short-digest"
    ),
    pytest.param("operator.replicas=0", "/operator/replicas", id="console-without-a-replica"),
]


@pytest.mark.parametrize("setting, message", TYPOS)
def test_helm_lint_strict_refuses_a_typo_and_names_it(setting: str, message: str) -> None:
    result = run_tool("helm", "lint", "--strict", str(CHART), "--set", setting)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


@pytest.mark.parametrize("setting, message", TYPOS[:5:2])
def test_helm_template_refuses_a_typo_too(setting: str, message: str) -> None:
    result = helm_template(CHART, "--set", setting)
    assert result.returncode != 0
    assert message in result.stderr
