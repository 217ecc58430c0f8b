"""haproxy (Debian's) in front of three real replicas, started by scripts/balance: health
checks on /ready, retries when a replica dies under load, drain through the admin socket."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO, free_port
from tests.serve.conftest import API_KEY, Server, start_server

BALANCE = REPO / "scripts" / "balance"

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None,
    reason="Debian's haproxy is not installed (scripts/test installs it as root)",
)


class Balancer:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], env: dict[str, str]) -> None:
        self.url, self.proc, self.env = url, proc, env

    def admin(self, *args: str) -> str:
        done = subprocess.run([str(BALANCE), *args], env=self.env, capture_output=True,
                              text=True, timeout=30, check=True)  # fmt: skip
        return done.stdout


@pytest.fixture
def replicas(model_dirs: dict[str, Path], tmp_path: Path) -> Iterator[list[Server]]:
    servers = [start_server(tmp_path / f"r{i}", model_dirs) for i in (1, 2, 3)]
    yield servers
    for s in servers:
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
            s.proc.wait(timeout=60)


@pytest.fixture
def balancer(replicas: list[Server], tmp_path: Path) -> Iterator[Balancer]:
    port = free_port()
    env = os.environ | {"MLTRAIL_LB_DIR": str(tmp_path / "lb")}
    log = tmp_path / "haproxy.log"
    proc = subprocess.Popen(
        [str(BALANCE), "--bind", f"127.0.0.1:{port}",
         *(s.url.removeprefix("http://") for s in replicas)],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    lb = Balancer(f"http://127.0.0.1:{port}", proc, env)
    deadline = time.monotonic() + 30
    while "UP" not in lb_status(lb) or lb_status(lb).count("UP") < 3:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, lb_status(lb) + log.read_text()
        time.sleep(0.3)
    yield lb
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def lb_status(lb: Balancer) -> str:
    try:
        return lb.admin("status")
    except subprocess.CalledProcessError:
        return ""


def predictions_served(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "mltrail_requests_total" and s.labels["endpoint"] == "/predict/text"
    )


class Load:
    """Threads posting predictions through the balancer until stopped; every outcome counted."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.outcomes: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = threads
        self._threads = [threading.Thread(target=self._run, args=(url,)) for _ in range(threads)]

    def _run(self, url: str) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/predict/text", json={"texts": ["a fine film", "dull"]})
                    outcome = str(r.status_code)
                except httpx.TransportError as exc:
                    outcome = type(exc).__name__
                with self._lock:
                    self.outcomes[outcome] += 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)


def test_a_replica_killed_under_load_costs_no_request(
    balancer: Balancer, replicas: list[Server]
) -> None:
    with Load(balancer.url) as load:
        time.sleep(3)
        replicas[1].proc.send_signal(signal.SIGKILL)
        time.sleep(4)  # the health check takes it out within 2 s
        answered_at_kill = sum(load.outcomes.values())
        time.sleep(3)
    # Requests that had not reached r2, or that it had not begun to answer, are retried on
    # another replica. One whose answer r2 had begun to send when it died cannot be (haproxy
    # logs it "SD": the response headers were out): at most one per in-flight request, i.e.
    # per load thread; usually none.
    failed = {k: n for k, n in load.outcomes.items() if k != "200"}
    assert set(failed) <= {"RemoteProtocolError"} and sum(failed.values()) <= load.threads, failed
    assert load.outcomes["200"] > answered_at_kill > 0
    status = lb_status(balancer)
    assert "r2" in status and "DOWN" in status.split("r2", 2)[2].splitlines()[0], status


def test_sigterm_drains_a_replica_and_the_admin_drain_stops_its_traffic(
    balancer: Balancer, replicas: list[Server]
) -> None:
    balancer.admin("drain", "r1")
    before = predictions_served(replicas[0])
    with Load(balancer.url) as load:
        time.sleep(2)
        after_drain = predictions_served(replicas[0])
        replicas[2].proc.send_signal(signal.SIGTERM)  # graceful stop under load
        assert replicas[2].wait() in (0, -signal.SIGTERM)
        time.sleep(2)
    assert set(load.outcomes) == {"200"}, load.outcomes
    assert after_drain == before, "a drained replica got new requests"
    balancer.admin("ready", "r1")
    with httpx.Client(base_url=balancer.url, headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        for _ in range(20):
            assert c.post("/predict/text", json={"texts": ["fine"]}).status_code == 200
    assert predictions_served(replicas[0]) > before, "r1 did not come back after ready"
