"""The topology migration hook: before every install and upgrade, a Job runs
`hookhub topology apply --yes` ahead of the topology declaration, so an upgrade that changes a
queue's arguments migrates it (every message kept) instead of failing on it."""

import pytest

from .chart import (
    CHART,
    Manifest,
    helm_template,
    manifests_of,
    of_kind,
    pod_labels,
    pod_spec,
    render,
    render_all_features,
)

MIGRATION, DECLARATION, POLICY = (
    "hookhub-topology-migration",
    "hookhub-topology",
    "hookhub-topology",
)


@pytest.fixture(scope="module")
def defaults() -> list[Manifest]:
    return manifests_of(render())


def jobs(manifests: list[Manifest]) -> dict[str, Manifest]:
    return of_kind(manifests, "Job")


def weight(manifest: Manifest) -> int:
    return int(manifest["metadata"]["annotations"].get("helm.sh/hook-weight", 0))


def container(job: Manifest) -> dict:
    (only,) = pod_spec(job)["containers"]
    return only


def test_the_migration_runs_apply_yes_with_the_consumers_image_before_every_install_and_upgrade(
    defaults: list[Manifest],
) -> None:
    job = jobs(defaults)[MIGRATION]
    assert container(job)["args"] == ["topology", "apply", "--yes"]
    assert "/hookhub-consumers:" in container(job)["image"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"


def test_the_migration_runs_before_the_declaration_which_would_fail_on_what_it_migrates(
    defaults: list[Manifest],
) -> None:
    assert weight(jobs(defaults)[MIGRATION]) < weight(jobs(defaults)[DECLARATION])


def test_a_failed_migration_is_kept_for_its_log_and_a_new_one_replaces_it(
    defaults: list[Manifest],
) -> None:
    policy = jobs(defaults)[MIGRATION]["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    assert set(policy.split(",")) == {"before-hook-creation", "hook-succeeded"}


def test_the_migration_reads_the_broker_and_its_management_api_from_the_secret(
    defaults: list[Manifest],
) -> None:
    env = {e["name"]: e for e in container(jobs(defaults)[MIGRATION])["env"]}
    assert env["HOOKHUB_AMQP_URL"]["valueFrom"]["secretKeyRef"]["name"] == "hookhub"
    management = env["HOOKHUB_RABBITMQ_MANAGEMENT_URL"]["valueFrom"]["secretKeyRef"]
    assert management == {
        "name": "hookhub",
        "key": "HOOKHUB_RABBITMQ_MANAGEMENT_URL",
        "optional": True,
    }
    assert env["HOOKHUB_RETRY_DELAYS"] == {"name": "HOOKHUB_RETRY_DELAYS", "value": "5,30,300"}


def test_the_migration_is_let_out_by_the_topology_policy_created_before_it(
    defaults: list[Manifest],
) -> None:
    job, policy = jobs(defaults)[MIGRATION], of_kind(defaults, "NetworkPolicy")[POLICY]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels(job).items()
    assert weight(policy) < weight(job)


def test_the_migration_uses_nothing_the_release_creates_after_it(defaults: list[Manifest]) -> None:
    spec = pod_spec(jobs(defaults)[MIGRATION])
    assert "serviceAccountName" not in spec
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_the_migration_is_scheduled_as_the_topology_values_say() -> None:
    job = jobs(manifests_of(render_all_features()))["hookhub-events-topology-migration"]
    assert pod_spec(job)["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_migrating_can_be_switched_off_leaving_the_declaration() -> None:
    assert set(jobs(manifests_of(render("--set", "topology.migrate=false")))) == {DECLARATION}


def test_without_the_topology_jobs_nothing_is_migrated_either() -> None:
    assert jobs(manifests_of(render("--set", "topology.enabled=false"))) == {}


def test_the_switch_is_a_boolean_the_schema_checks() -> None:
    result = helm_template(CHART, "--set-string", "topology.migrate=yes")
    assert result.returncode != 0
    assert "migrate" in result.stderr
