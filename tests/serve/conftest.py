"""Real model folders (trained here on small data) and a real server process on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from mltrail.config import load_params
from tests.conftest import PARAMS, free_port

API_KEY = "test-key-123"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two text models (different C) and a CNN, written by the real training stages."""
    from mltrail.data.cifar10 import read_cifar10_archive
    from mltrail.data.sources import FetchedFile
    from mltrail.stages import prepare_cifar10, prepare_text, train_cifar10, train_text
    from tests.builders import text_rows, write_cifar_archive, write_csv

    root = tmp_path_factory.mktemp("serve-models")
    csv = write_csv(root / "reviews.csv", text_rows(60))
    base = [f"text.source.path={csv}", f"tracking.journal_dir={root / 'journal'}",
            "train_cifar10.epochs=1", "train_cifar10.device=cpu"]  # fmt: skip
    params = load_params(PARAMS, base)
    prepare_text.run(params, root / "text_data", root, progress=False)
    train_text.run(params, "none", root / "text_data", root / "text")
    other = load_params(PARAMS, [*base, "train_text.C=0.05"])
    train_text.run(other, "none", root / "text_data", root / "text2")
    archive = write_cifar_archive(root / "c.tar.gz", per_class_per_batch=4, test_per_class=4)
    prepared = prepare_cifar10.prepare_cifar10(
        read_cifar10_archive(archive), params.cifar10_section()
    )
    source = FetchedFile(archive, "0" * 64, "path", verified=False)
    prepare_cifar10.write_prepared_cifar10(
        prepared, root / "image_data", source, params.cifar10_section()
    )
    train_cifar10.run(params, "none", root / "image_data", root / "image", progress=False)
    return {"text": root / "text", "text2": root / "text2", "image": root / "image",
            "text_data": root / "text_data", "image_data": root / "image_data"}  # fmt: skip


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    workdir: Path

    def client(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> int:
        """SIGTERM; the exit status once uvicorn has shut down gracefully (it re-raises the
        signal after its shutdown, so a graceful stop exits by SIGTERM)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> int:
        code = self.proc.wait(timeout=60)
        log = self.log.read_text()
        assert "Application shutdown complete" in log, log[-3000:]
        return code


def start_server(
    workdir: Path,
    models: dict[str, Path],
    *,
    environ: Mapping[str, str | None] | None = None,
    **settings: object,
) -> Server:
    """A real ``mltrail serve`` on 127.0.0.1 with ``settings`` in its YAML file and the API key
    in its environment; ``environ`` adds variables (None: removes one)."""
    return start_server_with([str(BIN / "mltrail")], workdir, models, environ=environ, **settings)


def start_server_with(
    command: list[str],
    workdir: Path,
    models: dict[str, Path],
    *,
    environ: Mapping[str, str | None] | None = None,
    **settings: object,
) -> Server:
    """:func:`start_server`, with ``command`` instead of ``mltrail`` (``serve --settings FILE``
    follows it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    values = {
        "text_model": str(models["text"]),
        "image_model": str(models["image"]),
        "port": free_port(),
        "pointer_file": str(workdir / "pointer.json"),
        "telemetry": {"sqlite_path": str(workdir / "telemetry.db"),
                      "spill_dir": str(workdir / "spill")},
    } | settings  # fmt: skip
    (workdir / "serve.yaml").write_text(yaml.safe_dump(values))
    log = workdir / "server.log"
    env = os.environ | {"MLTRAIL_API_KEY": API_KEY, "MLTRAIL_IMAGE_TAG": "mltrail:test"}
    for name, value in (environ or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    proc = subprocess.Popen(
        [*command, "serve", "--settings", str(workdir / "serve.yaml")],
        cwd=workdir, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = Server(f"http://127.0.0.1:{values['port']}", proc, log, workdir)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"the server did not become ready:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(
    model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("server"), model_dirs)
    yield running
    running.stop()
