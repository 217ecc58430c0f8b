"""deploy/compose: the team stack as containers, run here by podman-compose (scripts/stack, with
compose.local.yaml over compose.yaml: no registry is reachable, so every image is built here).

The files (quick, no containers): the merged configuration uses only local images, and the
compose variants of haproxy's and Prometheus' configurations keep what the shipped ones say.

The stack (marked ``containers`` and ``slow``): `scripts/stack build` (or the images already
built), `scripts/stack up` (each stage healthy before the next; its wall time is the
start-to-healthy time), then as a team uses it: a text model trained on 2000 real reviews with
the stack's MLflow as tracker, `mltrail promote` moving its registry alias, both replicas
following it, predictions through haproxy, the same prediction ids read back from the
stack's PostgreSQL, Prometheus scraping both replicas with the shipped rules loaded. Torn down
afterwards (containers, network, volumes), also when it fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from mltrail.contracts.manifest import Manifest
from tests.conftest import PARAMS, free_port, shared_datasets, train_text_args
from tests.release.containers import (
    CONTAINERS_CONF,
    REPO,
    image_size_mb,
    podman,
    require_podman,
    serving_image,
)

psycopg = pytest.importorskip("psycopg")

COMPOSE = REPO / "deploy" / "compose"
STACK = REPO / "scripts" / "stack"
BIN = Path(sys.executable).parent
ALIAS = "models:/mltrail-text@production"
POLL_S = 2
"""The replicas' alias poll in the test (MLTRAIL_ALIAS_POLL_S; compose.yaml's default is 10)."""
BUILT_HERE = {
    "MLTRAIL_TRACKING_IMAGE": "localhost/mltrail-tracking:test",
    "MLTRAIL_INFRA_IMAGE": "localhost/mltrail-infra:test",
}
"""The images `scripts/stack build tracking infra` makes for the test; the server image is
:data:`tests.release.containers.IMAGE`, which the other container tests use too."""


def _podman_compose() -> str:
    found = shutil.which("podman-compose", path=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    if found is None:
        pytest.skip("podman-compose is not installed (the dev extra: pip install -e .[dev])")
    return found


def _merged_config(env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [_podman_compose(), "-f", "compose.yaml", "-f", "compose.local.yaml", "config"],
        cwd=COMPOSE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, object] = yaml.safe_load(done.stdout)
    return config


def test_the_local_override_replaces_every_upstream_image() -> None:
    env = os.environ | {"MLTRAIL_API_KEY": "k", "POSTGRES_PASSWORD": "p", "S3_SECRET_KEY": "s"}
    upstream = yaml.safe_load((COMPOSE / "compose.yaml").read_text())["services"]
    merged = _merged_config(env)["services"]
    assert isinstance(merged, dict) and set(merged) == set(upstream)
    images = {name: service["image"] for name, service in merged.items()}
    assert all(image.startswith("localhost/") for image in images.values()), images
    infra = {n for n, i in images.items() if i.startswith("localhost/mltrail-infra:")}
    assert infra == {"postgres", "s3", "s3-bucket", "lb", "prometheus"}
    # A probe replaced, not joined to the upstream one (compose merges lists).
    for name in ("s3", "prometheus"):
        test = merged[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and test.count("CMD") == 1, (name, test)
    # Without a secret, compose refuses to start and says which.
    without = {k: v for k, v in env.items() if k != "MLTRAIL_API_KEY"}
    done = subprocess.run(
        [_podman_compose(), "-f", "compose.yaml", "config"],
        cwd=COMPOSE,
        env=without,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "set MLTRAIL_API_KEY" in done.stdout + done.stderr


def _section(cfg: str, header: str) -> list[str]:
    """The lines of an haproxy section (without comments or blank lines)."""
    lines = cfg.splitlines()
    start = lines.index(header)
    body = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        stripped = line.split("#", 1)[0].strip()
        if stripped:
            body.append(stripped)
    return body


def test_the_compose_variants_keep_the_shipped_configuration() -> None:
    shipped = (REPO / "deploy" / "haproxy" / "haproxy.cfg").read_text()
    variant = (COMPOSE / "haproxy.cfg").read_text()
    assert _section(variant, "defaults") == _section(shipped, "defaults")
    checks = [line for line in _section(shipped, "backend replicas") if "server " not in line]
    backend = _section(variant, "backend replicas")
    for line in checks:  # the /ready check, its timings and limits, all kept
        assert any(v.startswith(line) for v in backend), line
    servers = [v.split()[1:3] for v in backend if v.startswith("server ")]
    assert servers == [["serve-1", "serve-1:8000"], ["serve-2", "serve-2:8000"]]
    prometheus = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    shipped_prom = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == shipped_prom["rule_files"]
    for rule_file in prometheus["rule_files"]:  # mounted from deploy/prometheus/rules
        assert (REPO / "deploy" / "prometheus" / rule_file).is_file()
    serve = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "mltrail-serve")
    assert serve["static_configs"][0]["targets"] == ["serve-1:8000", "serve-2:8000"]


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    project: str
    api_key: str
    ports: dict[str, int]
    images: dict[str, str]
    build_s: float | None
    up_s: float

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def telemetry_dsn(self) -> str:
        password = self.env["POSTGRES_PASSWORD"]
        return f"postgresql://postgres:{password}@127.0.0.1:{self.ports['postgres']}/telemetry"

    def container(self, service: str) -> str:
        return podman(
            "ps",
            "--filter",
            f"label=io.podman.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
            "--format",
            "{{.Names}}",
        ).split()[0]

    def served_version(self, replica: str) -> str | None:
        """The text model version REPLICA serves (asked inside its container: the replicas
        are reached from outside only through the balancer)."""
        probe = (
            "import json, os, urllib.request as u; "
            "r = u.Request('http://127.0.0.1:8000/version', "
            "headers={'Authorization': 'Bearer ' + os.environ['MLTRAIL_API_KEY']}); "
            "print(json.load(u.urlopen(r, timeout=5))['models']['text']['version'])"
        )
        out = podman("exec", self.container(replica), "python", "-c", probe, check=False)
        return out.strip() or None


def _stack(command: str, env: dict[str, str], timeout: float, *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [str(STACK), command, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        pytest.fail(
            f"scripts/stack {command} exited {done.returncode}:\n{done.stdout[-4000:]}"
            f"{done.stderr[-4000:]}"
        )
    print(f"\nscripts/stack {command}: {took:.1f} s\n{done.stdout[-1500:]}")
    return took


def _leftovers(project: str) -> list[str]:
    found = []
    for kind, fmt in (
        ("ps -a", "{{.Names}}"),
        ("volume ls", "{{.Name}}"),
        ("network ls", "{{.Name}}"),
    ):
        names = podman(*kind.split(), "--format", fmt, check=False).split()
        found += [f"{kind}: {n}" for n in names if n.startswith(f"{project}_")]
    return found


@pytest.fixture
def stack() -> Iterator[Stack]:
    require_podman()
    _podman_compose()
    project = f"mltrail-test-{os.getpid()}"
    ports = {s: free_port() for s in ("lb", "lb_stats", "mlflow", "prometheus", "postgres")}
    api_key = secrets.token_hex(16)
    # The server image: built once per session for every container test (or
    # $MLTRAIL_TEST_IMAGE). MLTRAIL_TEST_STACK_BUILT=1: the images of BUILT_HERE are in
    # podman's store already (a rerun), not built again.
    started = time.monotonic()
    images = BUILT_HERE | {"MLTRAIL_IMAGE": serving_image()}
    env = (
        os.environ
        | images
        | {
            "CONTAINERS_CONF": str(CONTAINERS_CONF),
            "MLTRAIL_STACK_PROJECT": project,
            "MLTRAIL_API_KEY": api_key,
            "POSTGRES_PASSWORD": secrets.token_hex(12),
            "S3_SECRET_KEY": secrets.token_hex(12),
            "MLTRAIL_ALIAS_POLL_S": str(POLL_S),
            "MLTRAIL_BIND": "127.0.0.1",
            "MLTRAIL_LB_PORT": str(ports["lb"]),
            "MLTRAIL_LB_STATS_PORT": str(ports["lb_stats"]),
            "MLTRAIL_MLFLOW_PORT": str(ports["mlflow"]),
            "MLTRAIL_PROMETHEUS_PORT": str(ports["prometheus"]),
            "MLTRAIL_POSTGRES_PORT": str(ports["postgres"]),
            "PODMAN_COMPOSE": _podman_compose(),
        }
    )
    build_s = None
    if os.environ.get("MLTRAIL_TEST_STACK_BUILT") == "1":
        for image in BUILT_HERE.values():
            podman("image", "exists", image)
    else:
        _stack("build", env, 3600, "tracking", "infra")
        build_s = time.monotonic() - started
    try:
        up_s = _stack("up", env, timeout=1800)
        yield Stack(env, project, api_key, ports, images, build_s, up_s)
    finally:
        done = subprocess.run(
            [str(STACK), "down"], env=env, capture_output=True, text=True, timeout=300
        )
        print(done.stdout[-500:], done.stderr[-2000:])
    assert _leftovers(project) == []


def _mltrail(*args: str, cwd: Path, timeout: float = 600) -> str:
    env = os.environ | {"MLTRAIL_DATA_MIRROR": str(shared_datasets())}
    done = subprocess.run(
        [str(BIN / "mltrail"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"mltrail {args[0]}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _wait(what: str, check: object, timeout_s: float, every_s: float = 1.0) -> float:
    """Call ``check`` until it returns true; the seconds it took."""
    assert callable(check)
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"{what}: not within {timeout_s} s"
        time.sleep(every_s)
    return time.monotonic() - started


@pytest.mark.containers
@pytest.mark.slow
@pytest.mark.shared_data
def test_the_stack_trains_promotes_serves_and_records(stack: Stack, tmp_path: Path) -> None:
    # The replicas serve the image's own model, registered by registry-seed as version 1.
    seeded = {r: stack.served_version(r) for r in ("serve-1", "serve-2")}
    assert len(set(seeded.values())) == 1 and None not in seeded.values(), seeded

    # A real text model, tracked in the stack's MLflow (artifacts into its S3 through it).
    tracker = stack.url("mlflow")
    data, model = tmp_path / "data" / "text", tmp_path / "model"
    _mltrail(
        "prepare",
        "text",
        "--out",
        str(data),
        "--params",
        str(PARAMS),
        "--set",
        "text.sample_rows=2000",
        "--no-progress",
        cwd=tmp_path,
    )
    _mltrail(
        *train_text_args(tracker, data, model, tmp_path / "journal"), "--no-progress", cwd=tmp_path
    )
    new = Manifest.read(model).model_version
    assert new not in seeded.values()

    # mltrail promote moves models:/mltrail-text@production in the stack's registry.
    out = _mltrail(
        "promote",
        str(model),
        "--params",
        str(PARAMS),
        "--set",
        f"retrain.releases_dir={tmp_path / 'releases'}",
        "--set",
        f"retrain.pointer_file={tmp_path / 'releases' / 'serving.json'}",
        cwd=tmp_path,
    )
    assert ALIAS in out or "production" in out, out
    rollout_s = _wait(
        "both replicas serving the promoted model",
        lambda: all(stack.served_version(r) == new for r in ("serve-1", "serve-2")),
        timeout_s=120,
        every_s=0.5,
    )
    print(f"rollout: both replicas serve {new} {rollout_s:.1f} s after `mltrail promote`")

    # Predictions through haproxy, from a few clients at once (both replicas get some).
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    reviews = [f"a moving story, wonderful acting, number {i}" for i in range(20)] + [
        f"dull, far too long and badly written, number {i}" for i in range(20)
    ]

    def predict(text: str) -> httpx.Response:
        return httpx.post(
            f"{stack.url('lb')}/predict/text", json={"text": text}, headers=headers, timeout=30
        )

    assert httpx.post(f"{stack.url('lb')}/predict/text", json={"text": "x"}).status_code == 401
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(predict, reviews))
    assert [a.status_code for a in answers] == [200] * len(reviews), answers[0].text
    bodies = [a.json() for a in answers]
    assert {b["model_version"] for b in bodies} == {new}
    ids = {p["prediction_id"] for b in bodies for p in b["predictions"]}
    assert len(ids) == len(reviews)
    labels = [b["predictions"][0]["class_name"] for b in bodies]
    assert labels[:20].count("pos") > 10 and labels[20:].count("neg") > 10, labels

    # haproxy spread them over both replicas (its stats: sessions per server).
    stats = httpx.get(f"{stack.url('lb_stats')}/stats;csv", timeout=5).text
    sessions = {
        row[1]: int(row[7])
        for row in (line.split(",") for line in stats.splitlines())
        if row[0] == "replicas" and row[1].startswith("serve-")
    }
    assert set(sessions) == {"serve-1", "serve-2"} and min(sessions.values()) > 0, sessions

    # The same prediction ids, read back from the stack's PostgreSQL (the replicas flush
    # every 0.2 s), with the promoted version.
    def stored() -> dict[str, str]:
        with psycopg.connect(stack.telemetry_dsn, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT prediction_id, model_version FROM predictions "
                "WHERE prediction_id = ANY(%s)",
                (sorted(ids),),
            ).fetchall()
        return {str(pid): str(version) for pid, version in rows}

    _wait("telemetry rows in the stack's PostgreSQL", lambda: len(stored()) == len(ids), 30, 0.5)
    assert stored() == dict.fromkeys(ids, new)

    # Prometheus scrapes both replicas (up), with the shipped alert rules loaded.
    def targets_up() -> dict[str, str]:
        active = httpx.get(f"{stack.url('prometheus')}/api/v1/targets", timeout=5).json()
        return {
            t["labels"]["instance"]: t["health"]
            for t in active["data"]["activeTargets"]
            if t["labels"]["job"] == "mltrail-serve"
        }

    _wait("Prometheus: both replicas up", lambda: set(targets_up().values()) == {"up"}, 60)
    assert sorted(targets_up()) == ["serve-1:8000", "serve-2:8000"]
    rules = httpx.get(f"{stack.url('prometheus')}/api/v1/rules", timeout=5).json()
    loaded = {g["name"] for g in rules["data"]["groups"]}
    shipped = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules" / "mltrail.yml").read_text())
    assert loaded == {g["name"] for g in shipped["groups"]}
    query = httpx.get(
        f"{stack.url('prometheus')}/api/v1/query",
        params={
            "query": 'sum(mltrail_requests_total{job="mltrail-serve",endpoint="/predict/text"})'
        },
        timeout=5,
    ).json()
    print(f"prometheus: {json.dumps(query['data']['result'])[:300]}")

    sizes = {image: round(image_size_mb(image)) for image in stack.images.values()}
    build = f"{stack.build_s:.0f} s" if stack.build_s is not None else "skipped (prebuilt)"
    print(
        f"figures: build {build}; up (start to healthy) {stack.up_s:.1f} s; rollout "
        f"{rollout_s:.1f} s; image sizes MB {sizes}"
    )
