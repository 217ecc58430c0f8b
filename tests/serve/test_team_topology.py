"""The team topology end to end, every piece real and on loopback: MLflow's tracking server on
PostgreSQL with its artifacts in S3 (moto's S3 server), two text models trained against it,
`mltrail promote` moving ``models:/mltrail-text@production``, three `mltrail serve` replicas
following that alias with their telemetry in one PostgreSQL database, haproxy in front of them
(scripts/balance), and client threads posting predictions through haproxy all along.

One scenario, in order (the setup costs most of the time):

1. `mltrail promote` of the second model under load: every replica answers with the new
   version within 10 s of the promotion, and no request through the balancer fails.
2. The load stops: the telemetry rows in PostgreSQL are exactly the predictions answered.
3. SIGKILL of one replica under load: haproxy routes around it; failed requests are counted
   and bounded.
4. The load stops and the other replicas drain (SIGTERM): every prediction answered is stored,
   except the killed replica's unflushed ones, all answered before it was killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from mltrail.contracts.manifest import Manifest
from tests.conftest import PARAMS, S3Bucket, free_port, fresh_database, train_text_args
from tests.serve.conftest import API_KEY, Server, start_server
from tests.serve.test_balancer import BALANCE, Balancer, lb_status
from tests.tracking.test_s3_artifacts import S3TeamServer

psycopg = pytest.importorskip("psycopg")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("haproxy") is None,
        reason="Debian's haproxy is not installed (scripts/test installs it as root)",
    ),
]

BIN = Path(sys.executable).parent
ALIAS_URI = "models:/mltrail-text@production"
REPLICAS = 3
THREADS = 4
ROLLOUT_LIMIT_S = 10.0
POLL_S = "1"
"""The replicas' alias poll (MLTRAIL_ALIAS_POLL_S): the rollout takes about one poll, the
download of the new version and its load."""


@dataclass
class Answer:
    at: float  # time.monotonic() when the response (or the failure) came back
    status: str  # the HTTP status, or the transport error's name
    version: str = ""
    prediction_ids: tuple[str, ...] = ()


@dataclass
class Load:
    """Threads posting one review per request through ``url`` until stopped; every outcome
    recorded with its time, the model version and the prediction ids it answered."""

    url: str
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, n: int) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    r = client.post("/predict/text", json={"text": f"a fine film {n}-{i}"})
                    answer = Answer(time.monotonic(), str(r.status_code))
                    if r.status_code == 200:
                        body = r.json()
                        answer.version = body["model_version"]
                        answer.prediction_ids = tuple(
                            p["prediction_id"] for p in body["predictions"]
                        )
                except httpx.TransportError as exc:
                    answer = Answer(time.monotonic(), type(exc).__name__)
                with self._lock:
                    self.answers.append(answer)

    @contextmanager
    def running(self) -> Iterator[Load]:
        self._stop.clear()
        threads = [threading.Thread(target=self._run, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        try:
            yield self
        finally:
            self._stop.set()  # each thread finishes (and records) the request it has in flight
            for t in threads:
                t.join(timeout=60)

    def failed(self, since: float = 0.0, until: float = float("inf")) -> list[Answer]:
        return [a for a in self.answers if a.status != "200" and since <= a.at < until]

    def answered_ids(self) -> dict[str, float]:
        """Each prediction id a 2xx response carried, with the time it came back."""
        return {pid: a.at for a in self.answers if a.status == "200" for pid in a.prediction_ids}


def _mltrail(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(BIN / "mltrail"), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"mltrail {args[0]}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


def _train(tracker: str, data: Path, out: Path, work: Path, *sets: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "mltrail"), *train_text_args(tracker, data, out, work / "journal", *sets)],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _promote(model: Path, work: Path) -> subprocess.CompletedProcess[str]:
    return _mltrail(
        "promote",
        str(model),
        "--params",
        str(PARAMS),
        "--set",
        f"retrain.releases_dir={work / 'releases'}",
        "--set",
        f"retrain.pointer_file={work / 'releases' / 'serving.json'}",
        cwd=work,
    )


def _model_version(model: Path) -> str:
    return Manifest.read(model).model_version


def _served_version(replica: Server) -> str | None:
    try:
        with replica.client() as c:
            return str(c.get("/version", timeout=2).json()["models"]["text"]["version"])
    except (httpx.HTTPError, KeyError, ValueError):
        return None


@contextmanager
def _balancer(replicas: list[Server], work: Path) -> Iterator[Balancer]:
    port = free_port()
    env = os.environ | {"MLTRAIL_LB_DIR": str(work / "lb")}
    log = work / "haproxy.log"
    proc = subprocess.Popen(
        [
            str(BALANCE),
            "--bind",
            f"127.0.0.1:{port}",
            *(r.url.removeprefix("http://") for r in replicas),
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    lb = Balancer(f"http://127.0.0.1:{port}", proc, env)
    try:
        deadline = time.monotonic() + 30
        while lb_status(lb).count(" UP") < len(replicas):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, lb_status(lb) + log.read_text()
            time.sleep(0.3)
        yield lb
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture
def tracking(s3_bucket: S3Bucket, tmp_path: Path) -> Iterator[S3TeamServer]:
    """MLflow's server on a fresh PostgreSQL database, artifacts in the bucket."""
    work = tmp_path / "tracking"
    work.mkdir()
    with fresh_database("mltrail_topology", create=False) as store:
        server = S3TeamServer(work, store, s3_bucket)
        server.start()
        yield server
        server.stop()


def test_three_replicas_follow_the_alias_behind_haproxy(
    tracking: S3TeamServer,
    s3_bucket: S3Bucket,
    postgres_dsn: str,
    text_data: Path,
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "model-1", tmp_path / "model-2"
    trainings = [
        _train(tracking.uri, text_data, first, tmp_path),
        _train(tracking.uri, text_data, second, tmp_path, "train_text.C=0.05"),
    ]
    for proc in trainings:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
    old, new = _model_version(first), _model_version(second)
    assert old != new
    _promote(first, tmp_path)
    assert any(k.endswith("/mltrail-model/model.npz") for k in s3_bucket.keys("mlflow/"))

    environ = {"MLFLOW_TRACKING_URI": tracking.uri, "MLTRAIL_ALIAS_POLL_S": POLL_S}
    replicas = [
        start_server(
            tmp_path / f"r{i}",
            {"text": Path(ALIAS_URI), "image": Path()},
            environ=environ,
            text_model=ALIAS_URI,
            image_model=None,
            telemetry={
                "sinks": ["postgres"],
                "postgres_dsn": postgres_dsn,
                "spill_dir": str(tmp_path / f"r{i}" / "spill"),
            },
        )
        for i in range(1, REPLICAS + 1)
    ]
    try:
        assert [_served_version(r) for r in replicas] == [old] * REPLICAS
        with _balancer(replicas, tmp_path) as lb:
            _scenario(lb, replicas, tmp_path, second, old, new, postgres_dsn)
    finally:
        for r in replicas:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait(timeout=30)


def _scenario(
    lb: Balancer,
    replicas: list[Server],
    work: Path,
    second: Path,
    old: str,
    new: str,
    dsn: str,
) -> None:
    load = Load(lb.url)
    # 1. A promotion under load reaches every replica.
    with load.running():
        time.sleep(2)
        started = time.monotonic()
        _promote(second, work)
        # The promotion is done (the alias has moved) when `mltrail promote` returns; the
        # replicas may switch before that, while it writes its release records.
        promoted = time.monotonic()
        switched: dict[int, float] = {}
        while len(switched) < len(replicas) and time.monotonic() < promoted + 30:
            for i, r in enumerate(replicas):
                if i not in switched and _served_version(r) == new:
                    switched[i] = round(max(time.monotonic() - promoted, 0.0), 2)
            time.sleep(0.1)
        time.sleep(2)
    print(
        f"rollout: `mltrail promote` took {promoted - started:.2f} s; each replica answered "
        f"with {new} {switched} s after it returned; {len(load.answers)} requests through "
        f"the balancer, {len(load.failed())} failed"
    )
    assert sorted(switched) == list(range(len(replicas))), switched
    assert max(switched.values()) <= ROLLOUT_LIMIT_S, switched
    assert load.failed() == []
    versions = [a.version for a in load.answers]
    assert versions[0] == old and versions[-THREADS:] == [new] * THREADS

    # 2. Every prediction answered so far is one row, once every replica has flushed.
    answered = load.answered_ids()
    stored = _wait_for_rows(dsn, len(answered))
    assert stored == set(answered)

    # 3. A replica killed under load: haproxy retries elsewhere what it can.
    with load.running():
        time.sleep(2)
        killed = time.monotonic()
        replicas[1].proc.send_signal(signal.SIGKILL)
        time.sleep(5)  # haproxy marks it DOWN within 2 s (two failed checks, 1 s apart)
    failed = load.failed(since=killed)
    print(
        f"SIGKILL of r2 under load: {len(failed)} failed of "
        f"{sum(a.at >= killed for a in load.answers)} requests after it: "
        f"{[a.status for a in failed]}"
    )
    # A request that had not reached r2, or that r2 had not begun to answer, is retried on
    # another replica; one whose answer r2 had begun to send cannot be (haproxy logs "SD"): at
    # most one per request in flight, i.e. per client thread. Nothing fails before the kill.
    assert load.failed(until=killed) == []
    assert {a.status for a in failed} <= {"RemoteProtocolError", "502"}, failed
    assert len(failed) <= THREADS, failed
    assert "DOWN" in lb_status(lb).split("r2", 2)[2].splitlines()[0], lb_status(lb)
    assert sum(a.status == "200" and a.at > killed + 1 for a in load.answers) > 0

    # 4. The survivors drain; the telemetry rows are the predictions answered, less what the
    # killed replica held in its queue (at most flush_interval_s of its records), all of
    # them answered before it was killed.
    for i in (0, 2):
        replicas[i].stop()
    answered = load.answered_ids()
    stored = _stored_ids(dsn)
    lost = set(answered) - stored
    print(
        f"telemetry: {len(stored)} rows for {len(answered)} predictions answered; "
        f"{len(lost)} lost with the killed replica's queue"
    )
    assert all(answered[pid] < killed + 0.5 for pid in lost), sorted(answered[p] for p in lost)
    # A row without an answer: r2 recorded and flushed a prediction whose response it had not
    # finished sending (at most one per request in flight).
    assert len(stored - set(answered)) <= THREADS
    assert len(stored) >= len(answered) - len(lost)


def _stored_ids(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {row[0] for row in conn.execute("SELECT prediction_id FROM predictions")}


def _wait_for_rows(dsn: str, expected: int, timeout_s: float = 20) -> set[str]:
    """The stored prediction ids once there are ``expected`` of them (the replicas flush every
    0.2 s), or as they are at the deadline; then 1 s more, so that an extra row would show."""
    deadline = time.monotonic() + timeout_s
    while len(_stored_ids(dsn)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    return _stored_ids(dsn)
