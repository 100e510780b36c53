"""docker-compose.yml: `docker-compose config` accepts it, and the stack it describes is the one
docs/deploying.md promises (Kong alone published, the broker with its plugins, a service per
consumer, data in volumes, health-ordered start). No Docker engine here: nothing is started."""

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hookhub import specs
from hookhub.providers import PROVIDERS, VERIFY_TOKEN_SUFFIX
from hookhub_endpoints import config

from .repo import KONG_YML, ROOT, kong_renderer, run_tool

render = kong_renderer()

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
ONE_SHOTS = {"topology", "kong-config"}  # run to completion; no healthcheck
INTERPOLATED = re.compile(r"\$\{([A-Z0-9_]+)")

GET_HANDSHAKES = [n for n, p in PROVIDERS.items() if p.handshake and p.handshake.method == "GET"]


# What docs/deploying.md's one-liner fills in .env.example: the stack's own keys and passwords.
# Provider secrets stay empty (those providers are disabled) until the user pastes them from
# dashboards.
DOC_FILLS = re.compile(
    r"(?m)^(DECK_KEY_\w+|HOOKHUB_GATEWAY_SECRET|HOOKHUB_FOLLOW_UP_KEY|HOOKHUB_OPERATOR_CSRF_KEY|RABBITMQ_PASSWORD)=$"
)


def filled_env_file(tmp_path: Path) -> Path:
    """.env.example filled the way docs/deploying.md tells a newcomer to."""
    path = tmp_path / "test.env"
    path.write_text(DOC_FILLS.sub(r"\1=test-\1", ENV_EXAMPLE.read_text()))
    return path


def test_the_deploying_doc_fills_env_with_the_same_pattern() -> None:
    assert DOC_FILLS.pattern in (ROOT / "docs" / "deploying.md").read_text()


def compose_config(compose_file: Path, env_file: Path) -> Any:
    # docker-compose reads the caller's environment before the env file: start from a clean one
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return run_tool(
        "docker-compose",
        "--env-file", str(env_file),
        "--project-directory", str(ROOT),
        "-f", str(compose_file),
        "config",
        env=clean,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = compose_config(COMPOSE_FILE, filled_env_file(tmp_path_factory.mktemp("compose")))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def services(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return stack["services"]


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target → source; `docker-compose config` (1.29) writes volumes as source:target[:mode]."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = (
            volume.split(":")[:2]
            if isinstance(volume, str)
            else (volume["source"], volume["target"])
        )
        found[target] = source
    return found


def test_docker_compose_config_accepts_the_file(stack: dict[str, Any]) -> None:
    assert {"kong", "hub-api", "rabbitmq", "mongodb"} <= set(services(stack))


def test_compose_rejects_a_file_with_a_misspelt_key(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE_FILE.read_text().replace("    healthcheck:\n", "    healthchek:\n", 1)
    )
    result = compose_config(broken, filled_env_file(tmp_path))
    assert result.returncode != 0
    assert "healthchek" in result.stderr


def test_compose_refuses_to_start_without_the_secrets_and_names_the_missing_one(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / "unfilled.env"
    shutil.copy(ENV_EXAMPLE, env_file)
    result = compose_config(COMPOSE_FILE, env_file)
    assert result.returncode != 0
    assert re.search(r"set [A-Z_]+ in \.env", result.stderr)


def published_services(stack: dict[str, Any]) -> list[str]:
    return sorted(name for name, service in services(stack).items() if service.get("ports"))


def test_only_kong_is_published_on_the_host(stack: dict[str, Any]) -> None:
    assert published_services(stack) == ["kong"]
    assert [p["target"] for p in services(stack)["kong"]["ports"]] == [8000]


def test_a_published_hub_api_is_caught(stack: dict[str, Any]) -> None:
    broken = {
        "services": services(stack)
        | {"hub-api": services(stack)["hub-api"] | {"ports": [{"target": 8000}]}}
    }
    assert "hub-api" in published_services(broken)


def test_hub_api_shares_networks_only_with_kong_and_rabbitmq(stack: dict[str, Any]) -> None:
    hub_api_networks = set(services(stack)["hub-api"]["networks"])
    neighbours = {
        name
        for name, service in services(stack).items()
        if name != "hub-api" and hub_api_networks & set(service.get("networks", {}))
    }
    assert neighbours == {"kong", "rabbitmq"}
    assert all(stack["networks"][n].get("internal") for n in hub_api_networks)


def test_rabbitmq_runs_with_its_management_and_prometheus_plugins(stack: dict[str, Any]) -> None:
    rabbitmq = services(stack)["rabbitmq"]
    plugins = Path(mounts(rabbitmq)["/etc/rabbitmq/enabled_plugins"]).read_text()
    assert "rabbitmq_management" in plugins and "rabbitmq_prometheus" in plugins
    assert "management" in rabbitmq["image"]


def test_rabbitmq_runs_the_hung_node_detection_the_chaos_cluster_is_judged_with(
    stack: dict[str, Any],
) -> None:
    """The advanced.config docs/reliability.md recommends (a hung node noticed in seconds), the
    very file `make chaos` starts its nodes with."""
    from chaos.cluster import ADVANCED_CONFIG

    mounted = Path(mounts(services(stack)["rabbitmq"])["/etc/rabbitmq/advanced.config"])
    assert mounted.resolve() == ADVANCED_CONFIG
    terms = re.sub(r"%.*", "", mounted.read_text())  # without the comments
    assert re.search(r"\{kernel,\s*\[\{net_ticktime,\s*4\}\]\}", terms)
    assert re.search(r"\{aten,\s*\[\{poll_interval,\s*250\}\]\}", terms)


def test_broker_and_database_keep_their_data_in_named_volumes(stack: dict[str, Any]) -> None:
    assert mounts(services(stack)["rabbitmq"])["/var/lib/rabbitmq"] in stack["volumes"]
    assert mounts(services(stack)["mongodb"])["/data/db"] in stack["volumes"]


def test_every_consumer_runs_as_its_own_service(stack: dict[str, Any]) -> None:
    commands = {
        tuple(service.get("command", [])): name for name, service in services(stack).items()
    }
    for consumer in specs.names():
        assert ("consume", consumer) in commands, f"no service runs `hookhub consume {consumer}`"
        env = services(stack)[commands[("consume", consumer)]]["environment"]
        assert env["HOOKHUB_STORE_URL"].startswith("mongodb://mongodb:")


def unhealthchecked(stack: dict[str, Any]) -> list[str]:
    return sorted(
        name
        for name, service in services(stack).items()
        if name not in ONE_SHOTS and "healthcheck" not in service
    )


def test_every_long_running_service_has_a_healthcheck(stack: dict[str, Any]) -> None:
    assert unhealthchecked(stack) == []


def test_a_service_without_a_healthcheck_is_caught(stack: dict[str, Any]) -> None:
    payments = {k: v for k, v in services(stack)["payments"].items() if k != "healthcheck"}
    assert unhealthchecked({"services": services(stack) | {"payments": payments}}) == ["payments"]


def test_start_order_waits_on_health_and_completion(stack: dict[str, Any]) -> None:
    waits = {
        name: {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
        for name, service in services(stack).items()
    }
    assert waits["kong"] == {
        "kong-config": "service_completed_successfully",
        "hub-api": "service_healthy",
    }
    assert waits["hub-api"] == {"topology": "service_completed_successfully"}
    assert waits["topology"] == {"rabbitmq": "service_healthy"}
    for consumer in specs.names():
        assert waits[consumer] == {
            "topology": "service_completed_successfully",
            "mongodb": "service_healthy",
        }


def test_kong_config_is_rendered_with_every_key_kong_yml_needs(stack: dict[str, Any]) -> None:
    renderer = services(stack)["kong-config"]
    assert set(renderer["environment"]) == set(render.variables(KONG_YML.read_text()))
    assert (
        renderer["environment"]["DECK_HOOKHUB_GATEWAY_SECRET"]
        == services(stack)["hub-api"]["environment"]["HOOKHUB_GATEWAY_SECRET"]
    )
    kong = services(stack)["kong"]
    assert kong["environment"]["KONG_DATABASE"] == "off"
    # Kong reads what the renderer wrote, read-only
    assert mounts(kong)["/kong"] == mounts(renderer)["/app/var"] == "kong-config"


def test_hub_api_gets_a_secret_variable_for_every_provider(stack: dict[str, Any]) -> None:
    env = services(stack)["hub-api"]["environment"]
    assert {f"HOOKHUB_SECRET_{p.upper()}" for p in PROVIDERS} <= set(env)
    assert {
        f"HOOKHUB_SECRET_{p.upper()}{VERIFY_TOKEN_SUFFIX.upper()}" for p in GET_HANDSHAKES
    } <= set(env)
    assert env["HOOKHUB_GATEWAY_SECRET"]


def test_env_example_lists_every_variable_the_compose_file_reads() -> None:
    listed = set(re.findall(r"(?m)^([A-Z0-9_]+)=", ENV_EXAMPLE.read_text()))
    assert set(INTERPOLATED.findall(COMPOSE_FILE.read_text())) - listed == set()


def test_the_operator_console_shares_a_network_with_kong_alone(stack: dict[str, Any]) -> None:
    operator = services(stack)["operator"]
    assert operator["command"][0] == "operator"
    on_console = sorted(n for n, s in services(stack).items() if "console" in s.get("networks", {}))
    assert on_console == ["kong", "operator"]
    assert stack["networks"]["console"].get("internal")
    renderer = services(stack)["kong-config"]["environment"]
    assert renderer["DECK_OPERATOR_HOST"] == "operator"
    assert (
        operator["environment"]["HOOKHUB_GATEWAY_SECRET"] == renderer["DECK_HOOKHUB_GATEWAY_SECRET"]
    )
    assert operator["environment"]["HOOKHUB_STORE_URL"].startswith("mongodb://mongodb:")


def test_the_operator_console_gets_a_csrf_key_of_its_own(stack: dict[str, Any]) -> None:
    """Behind the gateway the console refuses to start without one; not the gateway secret."""
    environment = services(stack)["operator"]["environment"]
    assert environment["HOOKHUB_OPERATOR_CSRF_KEY"] == "test-HOOKHUB_OPERATOR_CSRF_KEY"
    assert environment["HOOKHUB_OPERATOR_CSRF_KEY"] != environment["HOOKHUB_GATEWAY_SECRET"]


def test_the_notifications_consumer_reads_the_mounted_endpoints_file(stack: dict[str, Any]) -> None:
    notifications = services(stack)["notifications"]
    path = notifications["environment"]["HOOKHUB_ENDPOINTS_FILE"]
    assert Path(mounts(notifications)[path]) == ROOT / "deploy" / "endpoints" / "endpoints.yaml"
    config.read(str(ROOT / "deploy" / "endpoints" / "endpoints.yaml"))  # a file it accepts
