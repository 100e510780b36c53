"""What the chart ships for operators: the Grafana dashboard (dashboards/hookhub.json), the alert
rules (the PrometheusRule), and Kong's tracing entry. The rules pass `promtool check rules` and
each alert fires on the failure it is for (`promtool test rules`); every query names only metrics
the code exports, with labels those metrics have; every alert links its runbook in
docs/operating.md."""

import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hookhub import specs, topology
from jsonschema import Draft7Validator

from .chart import CHART, NAMESPACE, manifests_of, of_kind, render_all_features
from .repo import KONG_YML, ROOT, load_yaml, run_tool

DASHBOARD = CHART / "dashboards" / "hookhub.json"
OPERATING_DOC = ROOT / "docs" / "operating.md"
OPERATIONS_SECTION = "## Operations: dashboards, alerts and runbooks"
CODE = (ROOT / "libs", ROOT / "hub-api" / "src", ROOT / "consumers" / "src")
# Labels Prometheus adds to every scraped series, whatever the code defines.
TARGET_LABELS = {"namespace", "pod", "instance", "job", "container", "le"}
# What a Grafana variable stands for when a query is checked outside Grafana.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*", "${datasource}": "x"}


# --- the metrics the code exports -------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    kind: str  # Counter, Gauge, Histogram, Summary, Info
    name: str
    labels: frozenset[str]

    def series(self) -> set[str]:
        """The names prometheus_client exposes it under."""
        base = self.name.removesuffix("_total") if self.kind == "Counter" else self.name
        return {
            "Counter": {f"{base}_total"},
            "Gauge": {base},
            "Histogram": {f"{base}_bucket", f"{base}_count", f"{base}_sum"},
            "Summary": {base, f"{base}_count", f"{base}_sum"},
            "Info": {f"{base}_info"},
        }[self.kind]


def defined_metrics(sources: Iterator[Path]) -> list[Metric]:
    """Every `Counter("name", "help", [labels])` (and Gauge, Histogram...) in the code."""
    found = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            kind = getattr(node.func, "id", getattr(node.func, "attr", None))
            name = node.args[0]
            if kind not in ("Counter", "Gauge", "Histogram", "Summary", "Info"):
                continue
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                continue
            labels = node.args[2] if len(node.args) > 2 else None
            labels = next((k.value for k in node.keywords if k.arg == "labelnames"), labels)
            names = ast.literal_eval(labels) if labels is not None else ()
            found.append(Metric(kind, name.value, frozenset(names)))
    return found


def code_sources() -> Iterator[Path]:
    for directory in CODE:
        yield from (p for p in directory.rglob("*.py") if "tests" not in p.parts)


@pytest.fixture(scope="module")
def exported() -> dict[str, Metric]:
    """Series name → the metric behind it."""
    return {series: m for m in defined_metrics(code_sources()) for series in m.series()}


# --- what a query refers to -------------------------------------------------------------------

STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
SELECTOR = re.compile(r"(?<![\w:])([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)")
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, labels or keywords)."""
    text = re.sub(r"\{[^}]*\}", " ", STRING.sub('""', expr))
    text = GROUPING.sub(" ", re.sub(r"\[[^\]]*\]", " ", text))
    names = set()
    for match in IDENTIFIER.finditer(text):
        follows = text[match.end() :].lstrip()
        if match[1] not in KEYWORDS and not follows.startswith("("):
            names.add(match[1])
    return names


def matched_labels(expr: str) -> Iterator[tuple[str, str]]:
    """(metric, label) for each label matcher attached to a metric name."""
    for metric, matchers in SELECTOR.findall(STRING.sub('""', expr)):
        for label in MATCHER_LABEL.findall(matchers):
            yield metric, label


def unknown_references(exprs: dict[str, str], exported: dict[str, Metric]) -> list[str]:
    problems = []
    for where, expr in exprs.items():
        names = metric_names(expr)
        if not names:
            problems.append(f"{where}: reads no metric")
        problems += [
            f"{where}: {n} is not a metric the code exports" for n in sorted(names - set(exported))
        ]
        for metric, label in matched_labels(expr):
            known = exported.get(metric)
            if known and label not in known.labels | TARGET_LABELS:
                problems.append(f"{where}: {metric} has no label {label}")
    return problems


# --- the dashboard ----------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queries(board: dict[str, Any]) -> dict[str, str]:
    """Each panel target's expression, by where it is."""
    return {
        f"panel {panel['title']!r} {target['refId']}": target["expr"]
        for panel in board["panels"]
        for target in panel.get("targets", [])
    }


PROMETHEUS_DATASOURCE = {
    "type": "object",
    "required": ["type", "uid"],
    "properties": {"type": {"const": "prometheus"}, "uid": {"const": "${datasource}"}},
}
GRID = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "additionalProperties": False,
    "properties": {
        "h": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1, "maximum": 24},
        "x": {"type": "integer", "minimum": 0, "maximum": 23},
        "y": {"type": "integer", "minimum": 0},
    },
}
# The shape Grafana (schemaVersion 39) loads: the parts of its dashboard model this file uses.
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "time": {"type": "object", "required": ["from", "to"]},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "type"],
                        "properties": {
                            "type": {
                                "enum": ["datasource", "query", "custom", "interval", "constant"]
                            }
                        },
                    },
                }
            },
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos"],
                "properties": {"id": {"type": "integer"}, "gridPos": GRID},
                "if": {"properties": {"type": {"const": "row"}}},
                "then": {"required": ["panels", "collapsed"]},
                "else": {
                    "required": ["datasource", "targets", "fieldConfig", "options"],
                    "properties": {
                        "type": {"enum": ["timeseries", "stat", "gauge", "bargauge", "table"]},
                        "datasource": PROMETHEUS_DATASOURCE,
                        "targets": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["refId", "expr", "datasource"],
                                "properties": {
                                    "refId": {"type": "string", "pattern": "^[A-Z]$"},
                                    "expr": {"type": "string", "minLength": 1},
                                    "datasource": PROMETHEUS_DATASOURCE,
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def dashboard_problems(board: dict[str, Any]) -> list[str]:
    problems = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in Draft7Validator(DASHBOARD_SCHEMA).iter_errors(board)
    ]
    if problems:
        return problems
    ids = [p["id"] for p in board["panels"]]
    if len(ids) != len(set(ids)):
        problems.append("two panels share an id")
    cells: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        grid = panel["gridPos"]
        if grid["x"] + grid["w"] > 24:
            problems.append(f"{panel['title']}: wider than the grid")
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    problems.append(f"{panel['title']} overlaps {cells[(x, y)]}")
                    break
                cells[(x, y)] = panel["title"]
    variables = {v["name"] for v in board["templating"]["list"]}
    for where, expr in queries(board).items():
        problems += [
            f"{where}: ${v} is not a variable"
            for v in re.findall(r"\$(\w+)", expr)
            if not v.startswith("__") and v not in variables
        ]
    return sorted(set(problems))


def test_the_dashboard_has_the_shape_grafana_loads() -> None:
    assert dashboard_problems(dashboard()) == []


def test_a_panel_without_a_query_or_overlapping_another_is_caught() -> None:
    board = dashboard()
    board["panels"][1]["targets"] = []
    board["panels"][3]["gridPos"] = dict(board["panels"][2]["gridPos"])
    board["panels"][4]["targets"][0]["expr"] += ' + on() hookhub_build_info{zone="$zone"}'
    problems = dashboard_problems(board)
    assert any("targets" in p for p in problems), problems
    board["panels"][1]["targets"] = dashboard()["panels"][1]["targets"]
    problems = dashboard_problems(board)
    assert any("overlaps" in p for p in problems), problems
    assert any("$zone is not a variable" in p for p in problems), problems


def as_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def write_rules(path: Path, groups: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def check_rules(tmp_path: Path, name: str, groups: list[dict[str, Any]]) -> Any:
    return run_tool("promtool", "check", "rules", str(write_rules(tmp_path / name, groups)))


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses expressions in rule files: each query becomes a recording rule
    rules = [
        {"record": f"dashboard:query:{i}", "expr": as_promql(expr)}
        for i, expr in enumerate(queries(dashboard()).values())
    ]
    result = check_rules(tmp_path, "dashboard.rules.yaml", [{"name": "dashboard", "rules": rules}])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_refuses_a_broken_query(tmp_path: Path) -> None:
    rules = [{"record": "dashboard:query:0", "expr": "sum(rate(hookhub_requests_total[5m])"}]
    result = check_rules(tmp_path, "broken.rules.yaml", [{"name": "dashboard", "rules": rules}])
    assert result.returncode != 0


def test_every_panel_reads_metrics_the_code_exports(exported: dict[str, Metric]) -> None:
    assert unknown_references(queries(dashboard()), exported) == []


def test_a_query_for_a_metric_the_code_lacks_is_caught(exported: dict[str, Metric]) -> None:
    broken = {
        "renamed": "sum(rate(hookhub_request_total[5m]))",
        "wrong label": 'sum(rate(hookhub_requests_total{consumer="x"}[5m]))',
        "no metric": "vector(1)",
    }
    assert unknown_references(broken, exported) == [
        "renamed: hookhub_request_total is not a metric the code exports",
        "wrong label: hookhub_requests_total has no label consumer",
        "no metric: reads no metric",
    ]


def test_metric_names_skips_functions_labels_and_durations() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, consumer) "
        '(rate(a_seconds_bucket{x="b_c"}[5m] offset 1h))) > 1e3 unless on (x) b_total'
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total"}


# --- the alert rules --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rule_groups() -> list[dict[str, Any]]:
    manifests = manifests_of(render_all_features())
    (rule,) = of_kind(manifests, "PrometheusRule").values()
    return rule["spec"]["groups"]


def alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def test_the_alert_rules_pass_promtool_check_rules(
    rule_groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    result = check_rules(tmp_path, "hookhub.rules.yaml", rule_groups)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts(rule_groups))} rules found" in result.stdout


def test_promtool_refuses_a_broken_alert(rule_groups: list[dict[str, Any]], tmp_path: Path) -> None:
    broken = json.loads(json.dumps(rule_groups))
    broken[0]["rules"][0]["annotations"]["summary"] = "{{ $labels.queue "
    result = check_rules(tmp_path, "broken.rules.yaml", broken)
    assert result.returncode != 0


def test_every_alert_reads_metrics_the_code_exports(
    rule_groups: list[dict[str, Any]], exported: dict[str, Metric]
) -> None:
    exprs = {f"alert {name}": rule["expr"] for name, rule in alerts(rule_groups).items()}
    assert unknown_references(exprs, exported) == []


def queue_pattern(rule: dict[str, Any]) -> str:
    """The regex an alert's `queue=~"..."` matcher holds (its PromQL string escapes undone)."""
    return re.search(r'queue=~"([^"]+)"', rule["expr"])[1].replace("\\\\", "\\")


def test_the_alert_queue_patterns_match_the_topologys_names(
    rule_groups: list[dict[str, Any]],
) -> None:
    parked = queue_pattern(alerts(rule_groups)["HookhubParkingLotNotEmpty"])
    work = queue_pattern(alerts(rule_groups)["HookhubConsumerStalled"])
    for consumer in specs.installed():
        queues = [q.name for q in topology.consumer_queues(consumer, (5, 30), 10)]
        assert [q for q in queues if re.fullmatch(parked, q)] == [
            topology.dead_letter_queue(consumer.name)
        ]
        assert [q for q in queues if re.fullmatch(work, q)] == [topology.work_queue(consumer.name)]


def slug(heading: str) -> str:
    """The anchor GitHub (and GitLab) gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    text = OPERATING_DOC.read_text()
    assert OPERATIONS_SECTION in text
    section = text.split(OPERATIONS_SECTION, 1)[1].split("\n## ", 1)[0]
    return {slug(line.lstrip("#")) for line in section.splitlines() if line.startswith("#")}


def test_every_alert_links_its_runbook_in_the_operating_doc(
    rule_groups: list[dict[str, Any]],
) -> None:
    anchors = runbook_anchors()
    doc = OPERATING_DOC.relative_to(ROOT).as_posix()
    for name, rule in alerts(rule_groups).items():
        url = rule["annotations"]["runbook_url"]
        page, anchor = url.split("#")
        assert page.endswith(f"/{doc}"), f"{name}: {url} is not a link to {doc}"
        assert anchor in anchors, f"{name}: {url} has no heading in {doc}'s operations section"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_the_alerts_that_matter_are_all_there(rule_groups: list[dict[str, Any]]) -> None:
    assert set(alerts(rule_groups)) == {
        "HookhubParkingLotNotEmpty",
        "HookhubConsumerLagging",
        "HookhubConsumerStalled",
        "HookhubIngestUnavailable",
        "HookhubBrokerDisconnected",
        "HookhubProviderSilent",
        "HookhubOutboxStuck",
    }


# --- each alert fires on its failure, and stays quiet on health (promtool test rules) ---------

NS = {"namespace": NAMESPACE}


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    selector = ", ".join(f'{k}="{v}"' for k, v in ({**NS, **labels}).items())
    return {"series": f"{metric}{{{selector}}}", "values": values}


def histogram(metric: str, buckets: dict[str, str], **labels: str) -> list[dict[str, str]]:
    return [series(f"{metric}_bucket", values, le=le, **labels) for le, values in buckets.items()]


PAYMENTS_DLQ = topology.dead_letter_queue("payments")
MINUTES = [
    # a parked message in payments' parking lot; production's is empty; another release's full
    series("hookhub_queue_messages", "0 0 2x30", queue=PAYMENTS_DLQ, pod="payments-1"),
    series("hookhub_queue_messages", "0x30", queue=topology.dead_letter_queue("production")),
    series("hookhub_queue_messages", "5x30", queue=PAYMENTS_DLQ, namespace="elsewhere"),
    # production has work waiting and finishes nothing; payments has work and keeps finishing
    series("hookhub_queue_messages", "7x30", queue=topology.work_queue("production")),
    series("hookhub_consumer_messages_total", "100x30", consumer="production", outcome="processed"),
    series("hookhub_queue_messages", "7x30", queue=topology.work_queue("payments")),
    series("hookhub_queue_messages", "3x30", queue=topology.retry_queue("notifications", 30)),
    series("hookhub_queue_messages", "4x30", queue=topology.UNROUTED_QUEUE),
    series("hookhub_consumer_messages_total", "0+10x30", consumer="payments", outcome="processed"),
    # payments finishes events 1-5 minutes after they were accepted; notifications within 1 s
    *histogram(
        "hookhub_consumer_event_age_seconds",
        {"1": "0x30", "60": "0x30", "300": "0+10x30", "+Inf": "0+10x30"},
        consumer="payments",
    ),
    *histogram(
        "hookhub_consumer_event_age_seconds",
        {"1": "0+10x30", "60": "0+10x30", "300": "0+10x30", "+Inf": "0+10x30"},
        consumer="notifications",
    ),
    # 5 of every 105 ingest answers are 503
    series("hookhub_requests_total", "0+100x30", route="events", provider="-", status="202"),
    series("hookhub_requests_total", "0+5x30", route="events", provider="-", status="503"),
    # hub-api-1 lost its broker at minute 2; payments-1 did not
    series("hookhub_broker_connected", "1 1 0x30", pod="hub-api-1", instance="10.0.0.1:8000"),
    series("hookhub_broker_connected", "1x32", pod="payments-1", instance="10.0.0.2:9100"),
    # payments' outbox never empties; production's drains
    series("hookhub_outbox_pending", "3x30", consumer="payments", pod="payments-1"),
    series("hookhub_outbox_pending", "0 2 0 1 0x27", consumer="production", pod="production-1"),
]
HOURS = [
    # Stripe stopped 6 hours ago; GitHub goes on; Hotmart stopped too but is ignored (values file)
    series(
        "hookhub_requests_total",
        "0+10x100 1000x20",
        route="webhooks",
        provider="stripe",
        status="202",
    ),
    series("hookhub_requests_total", "0+10x120", route="webhooks", provider="github", status="202"),
    series(
        "hookhub_requests_total",
        "0+10x100 1000x20",
        route="webhooks",
        provider="hotmart",
        status="202",
    ),
]
FIRING = {
    "HookhubParkingLotNotEmpty": [{"severity": "warning", "queue": PAYMENTS_DLQ}],
    "HookhubConsumerStalled": [{"severity": "critical", "consumer": "production"}],
    "HookhubConsumerLagging": [{"severity": "warning", "consumer": "payments"}],
    "HookhubIngestUnavailable": [{"severity": "critical"}],
    "HookhubBrokerDisconnected": [
        {"severity": "critical", "pod": "hub-api-1", "instance": "10.0.0.1:8000"}
    ],
    "HookhubOutboxStuck": [{"severity": "warning", "consumer": "payments"}],
}


def expect(firing: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [{"exp_labels": {**NS, **labels}} for labels in firing]


# promtool evaluates every rule at each evaluation interval up to the last eval_time: the alerts
# of minutes and the alert of days are tested at their own pace, each in a file of its own.
UNIT_TESTS = {
    "minutes": {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": MINUTES,
                "alert_rule_test": [
                    {"eval_time": "25m", "alertname": name, "exp_alerts": expect(firing)}
                    for name, firing in FIRING.items()
                ]
                + [{"eval_time": "25m", "alertname": "HookhubProviderSilent", "exp_alerts": []}],
            },
            # nothing has lasted its `for` yet
            {
                "interval": "1m",
                "input_series": MINUTES,
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": name, "exp_alerts": []} for name in FIRING
                ],
            },
        ],
    },
    "hours": {
        "evaluation_interval": "1h",
        "tests": [
            {
                "interval": "1h",
                "input_series": HOURS,
                "alert_rule_test": [
                    {
                        "eval_time": "120h",
                        "alertname": "HookhubProviderSilent",
                        "exp_alerts": expect([{"severity": "warning", "provider": "stripe"}]),
                    },
                    {"eval_time": "99h", "alertname": "HookhubProviderSilent", "exp_alerts": []},
                ],
            },
        ],
    },
}


def without_annotations(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """promtool compares an alert's annotations too: the unit tests check what fires (its
    labels), `check rules` the annotations' templates."""
    return [
        {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
        for g in groups
    ]


def promtool_test_rules(tmp_path: Path, groups: list[dict[str, Any]], *paces: str) -> Any:
    """`promtool test rules` with the unit tests of these paces, on these rules."""
    write_rules(tmp_path / "hookhub.rules.yaml", without_annotations(groups))
    files = []
    for pace in paces:
        files.append(tmp_path / f"{pace}.test.yaml")
        files[-1].write_text(
            yaml.safe_dump({"rule_files": ["hookhub.rules.yaml"], **UNIT_TESTS[pace]})
        )
    return run_tool("promtool", "test", "rules", *map(str, files), cwd=tmp_path)


def test_each_alert_fires_on_its_failure_and_only_there(
    rule_groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    result = promtool_test_rules(tmp_path, rule_groups, *UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_alert_that_would_not_fire_is_caught(
    rule_groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    blunted = json.loads(json.dumps(rule_groups))
    parking = next(r for r in blunted[0]["rules"] if r["alert"] == "HookhubParkingLotNotEmpty")
    parking["expr"] = parking["expr"].replace("> 0", "> 5")
    result = promtool_test_rules(tmp_path, blunted, "minutes")
    assert result.returncode != 0
    assert "HookhubParkingLotNotEmpty" in result.stdout + result.stderr


# --- traces from the edge -----------------------------------------------------------------------


def test_kongs_opentelemetry_plugin_is_there_and_off_by_default() -> None:
    (plugin,) = (p for p in load_yaml(KONG_YML)["plugins"] if p["name"] == "opentelemetry")
    assert plugin["enabled"] is False
    assert plugin["config"]["traces_endpoint"].endswith("/v1/traces")  # OTLP/HTTP
    assert plugin["config"]["propagation"]["default_format"] == "w3c"
