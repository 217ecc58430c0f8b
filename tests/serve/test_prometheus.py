"""Prometheus: the shipped configuration, alert rules and dashboard, checked by promtool, and a
real Prometheus (Debian's) scraping real replicas until an injected condition fires its alert.

promtool and prometheus come from Debian's ``prometheus`` package (scripts/test installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mltrail.monitor.drift import DriftTest
from mltrail.monitor.policy import Check
from mltrail.monitor.prom import check_registry, write_prom
from mltrail.serve.metrics import ServerMetrics
from tests.conftest import REPO, free_port
from tests.serve.conftest import Server, start_server

PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "mltrail-serving.json"

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None or shutil.which("prometheus") is None,
    reason="Debian's prometheus package is not installed (scripts/test installs it as root)",
)


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def a_check() -> Check:
    drift = DriftTest("normal", "data", "ks", 0.5, 1e-9, 0.001, 0.0, 1.0)
    return Check(
        decision="retrain",
        reasons=[],
        model_version="train_text_mlflow@abc",
        predictions=200,
        tests=[drift],
        accuracy={"live": 0.8, "labelled": 40},
        latency={"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 30.0},
    )


def test_the_shipped_config_and_rules_are_valid_and_their_unit_tests_pass() -> None:
    config = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    tests = promtool("test", "rules", str(PROMETHEUS / "rules" / "mltrail.test.yml"))
    assert tests.returncode == 0, tests.stdout + tests.stderr
    # Every alert has a unit test that expects it to fire.
    rules = yaml.safe_load((PROMETHEUS / "rules" / "mltrail.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    unit = yaml.safe_load((PROMETHEUS / "rules" / "mltrail.test.yml").read_text())
    fired = {
        t["alertname"] for case in unit["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]
    }
    assert alerts == fired == {
        "MltrailReplicaDown", "MltrailLatencySLO", "MltrailHigh5xxRate",
        "MltrailTelemetryDropped", "MltrailTelemetryPending", "MltrailRetrainDecision",
        "MltrailMonitorStale", "MltrailGroupAccuracyGap",
    }  # fmt: skip


def test_monitor_prom_is_clean_under_promtool_and_holds_the_check(tmp_path: Path) -> None:
    path = tmp_path / "monitor.prom"
    write_prom(a_check(), "text", path)
    text = path.read_text()
    lint = promtool("check", "metrics", stdin=text)
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout
    samples = {
        (s.name, s.labels.get("percentile", s.labels.get("test", ""))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("mltrail_monitor_decision", "")] == 2
    assert samples[("mltrail_monitor_latency_seconds", "p99")] == pytest.approx(0.030)
    assert samples[("mltrail_monitor_drift_p_value", "normal")] == 1e-9
    assert samples[("mltrail_monitor_live_accuracy", "")] == 0.8
    assert not list(tmp_path.glob("*.tmp*")), "the write left a temporary file"


def test_the_servers_metrics_are_clean_under_promtool(server: Server) -> None:
    with server.client() as c:
        assert c.post("/predict/text", json={"texts": ["a fine film"]}).status_code == 200
        text = c.get("/metrics").text
    lint = promtool("check", "metrics", stdin=text)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def known_metric_names() -> set[str]:
    """Every series name a replica's /metrics or the monitor's file can hold, and ``up``."""
    names = {"up"}
    metrics = ServerMetrics(lambda: None)
    metrics.requests.labels("/predict/text", "200").inc()
    metrics.latency.labels("/predict/text").observe(0.01)
    metrics.predictions.labels("m", "c").inc()
    metrics.confidence.labels("m").observe(0.9)
    exposed = generate_latest(metrics.registry).decode()
    exposed += generate_latest(check_registry(a_check(), "text")).decode()
    for family in text_string_to_metric_families(exposed):
        names |= {s.name for s in family.samples}
    # The telemetry collector's families, read from its source (they need a live writer).
    source = "".join(
        (REPO / "src/mltrail" / f).read_text() for f in ("serve/metrics.py", "telemetry/metrics.py")
    )
    for kind, name in re.findall(r'(Counter|Gauge)MetricFamily\(\s*"(\w+)"', source):
        names.add(f"{name}_total" if kind == "Counter" else name)
    return names


def test_the_dashboard_is_well_formed_and_reads_only_metrics_that_exist(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    (variable,) = dashboard["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 8
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]  # Grafana's 24 columns
        mine = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    # promtool parses PromQL in rule files: every expression as a recording rule.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(exprs)
    ]}]}  # fmt: skip
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    check = promtool("check", "rules", str(tmp_path / "dashboard.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    known = known_metric_names()
    used = {n for e in exprs for n in re.findall(r"\b(mltrail_\w+|up)\b(?=\s*[{\[)])", e)}
    assert used and used <= known, used - known


# A real Prometheus, real replicas --------------------------------------------------------


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Debian's Prometheus with the shipped rules, scraping every second; the targets file is
    the one of the shipped configuration's file service discovery, written by the test."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"] = [
        c for c in config["scrape_configs"] if c["job_name"] == "mltrail-serve"
    ]
    # The shipped rules, their `for` durations cut so that a test need not wait minutes.
    rules = yaml.safe_load((PROMETHEUS / "rules" / "mltrail.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "mltrail.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "mltrail-serve.json").write_text("[]")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp_path / "prometheus.log"
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ok(f"{url}/-/ready"), 60, lambda: log.read_text()[-2000:])
        yield url, tmp_path / "targets" / "mltrail-serve.json"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(condition: Any, timeout_s: float, why: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s: {why()}")
        time.sleep(0.5)


def firing(url: str, alertname: str) -> list[dict[str, str]]:
    alerts = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a["labels"] for a in alerts if a["labels"]["alertname"] == alertname
            and a["state"] == "firing"]  # fmt: skip


def targets_up(url: str) -> dict[str, str]:
    active = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    return {t["labels"]["instance"]: t["health"] for t in active}


def test_a_real_prometheus_fires_the_latency_and_replica_alerts(
    model_dirs: dict[str, Path], tmp_path: Path, prometheus: tuple[str, Path]
) -> None:
    url, targets = prometheus
    # Replica 1 takes big inputs (so that a request can be slow); replica 2 is a plain one.
    slow = start_server(tmp_path / "r1", model_dirs, max_body_bytes=30_000_000,
                        max_text_chars=30_000_000)  # fmt: skip
    plain = start_server(tmp_path / "r2", model_dirs)
    try:
        instances = [s.url.removeprefix("http://") for s in (slow, plain)]
        targets.write_text(json.dumps([{"targets": instances}]))
        wait_for(lambda: set(targets_up(url).values()) == {"up"} and len(targets_up(url)) == 2,
                 60, lambda: targets_up(url))  # fmt: skip
        with slow.client() as c:
            for _ in range(5):  # fast requests: no alert
                assert c.post("/predict/text", json={"texts": ["a fine film"]}).status_code == 200
        time.sleep(3)  # three evaluations
        assert firing(url, "MltrailLatencySLO") == []
        assert firing(url, "MltrailReplicaDown") == []

        # The injected condition: requests that take seconds (2 x 3 MB of text each).
        huge = {"texts": ["a long, long review " * 150_000] * 2}
        with slow.client() as c:
            for _ in range(3):
                assert c.post("/predict/text", json=huge, timeout=120).status_code == 200
        wait_for(lambda: firing(url, "MltrailLatencySLO"), 60)
        (alert,) = firing(url, "MltrailLatencySLO")
        assert alert["endpoint"] == "/predict/text" and alert["severity"] == "warning"

        plain.proc.send_signal(signal.SIGKILL)
        plain.proc.wait(timeout=30)
        wait_for(lambda: firing(url, "MltrailReplicaDown"), 60, lambda: targets_up(url))
        down = firing(url, "MltrailReplicaDown")
        assert [a["instance"] for a in down] == [instances[1]]
        assert targets_up(url)[instances[0]] == "up"
    finally:
        slow.stop()
        if plain.proc.poll() is None:
            plain.stop()


def test_monitor_prom_holds_each_groups_accuracy_and_the_gap(tmp_path: Path) -> None:
    from mltrail.monitor.fairness import GroupAccuracy, GroupCheck

    groups = [
        GroupAccuracy("a", 100, 90, True),
        GroupAccuracy("b", 100, 60, True),
        GroupAccuracy("c", 5, 5, False),  # too few labels to be tested, still shown
    ]
    fairness = GroupCheck(groups, without_group=7, max_gap=0.1, min_labelled=30, level="warn")
    fairness.gap, fairness.best, fairness.worst, fairness.p_value = 0.3, "a", "b", 2e-6
    check = a_check()
    check.fairness = fairness.as_dict()
    path = tmp_path / "monitor.prom"
    write_prom(check, "text", path)
    text = path.read_text()
    lint = promtool("check", "metrics", stdin=text)
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout
    samples = {
        (s.name, s.labels.get("group", "")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith(("mltrail_monitor_group", "mltrail_monitor_fairness"))
    }
    assert samples == {
        ("mltrail_monitor_group_live_accuracy", "a"): 0.9,
        ("mltrail_monitor_group_live_accuracy", "b"): 0.6,
        ("mltrail_monitor_group_live_accuracy", "c"): 1.0,
        ("mltrail_monitor_group_labelled", "a"): 100,
        ("mltrail_monitor_group_labelled", "b"): 100,
        ("mltrail_monitor_group_labelled", "c"): 5,
        ("mltrail_monitor_group_accuracy_gap", ""): 0.3,
        ("mltrail_monitor_group_gap_p_value", ""): 2e-6,
        ("mltrail_monitor_fairness_decision", ""): 1,
    }
    # A window where no labelled prediction named a group: no group gauges at all.
    write_prom(a_check(), "text", path)
    assert "mltrail_monitor_group" not in path.read_text()
    assert "mltrail_monitor_fairness" not in path.read_text()
