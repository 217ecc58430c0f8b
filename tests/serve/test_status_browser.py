"""The status page in a real headless Chromium (Debian's, driven by playwright), on a real
server with real models, real promotions (``promote``: release copy, pointer, history) and the
real ``mltrail monitor``: the page shows the served version and its lineage, its figures move
with new traffic, a drift decision appears after shifted traffic, and a new version made
slower (tests/serve/slow_serve.py) is flagged. The docs' screenshots come from this test:
``MLTRAIL_STATUS_SCREENSHOTS=docs/images pytest tests/serve/test_status_browser.py``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from mltrail.config import load_params
from mltrail.contracts.manifest import Manifest
from mltrail.release.promote import promote
from tests.conftest import PARAMS, REPO, shared_datasets
from tests.release.test_loop import shifted
from tests.serve.conftest import API_KEY, BIN, Server, start_server_with

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.shared_data,
    pytest.mark.skipif(
        not Path(CHROMIUM).is_file(),
        reason="no chromium (apt-get install chromium; scripts/test installs it as root)",
    ),
]
SCREENSHOTS = os.environ.get("MLTRAIL_STATUS_SCREENSHOTS")
"""Where the screenshots go (docs/images for the docs' copies); unset: the test's folder only,
so that a test run leaves the repository as it was."""
SLOW_MS = 4.0


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            launched.close()


def _send(server: Server, texts: Sequence[str]) -> None:
    """One request per text (as clients do): its model time is one call's."""
    with server.client() as client:
        for text in texts:
            r = client.post("/predict/text", json={"texts": [text]})
            assert r.status_code == 200, r.text


def _monitor(work: Path, release: Path) -> str:
    done = subprocess.run(
        [str(BIN / "mltrail"), "monitor", "--params", str(PARAMS), "--model", str(release), "--out",
         str(work / "monitoring" / "text"), "--store", str(work / "telemetry.db"),
         "--set", "monitor.window=150", "--set", "monitor.min_predictions=100",
         "--set", f"retrain.pointer_file={work / 'releases' / 'serving.json'}"],
        cwd=work, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def imdb(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two text models trained on a real IMDB sample (C 1.0 and 0.3), and unseen reviews."""
    from mltrail.data.text import read_labelled_text
    from mltrail.stages import prepare_text, train_text

    root = tmp_path_factory.mktemp("imdb")
    base = [f"data.mirror={shared_datasets()}", "text.sample_rows=3000",
            f"tracking.journal_dir={root / 'journal'}"]  # fmt: skip
    params = load_params(PARAMS, base)
    prepare_text.run(params, root / "data", root, progress=False)
    train_text.run(params, "none", root / "data", root / "a")
    other = load_params(PARAMS, [*base, "train_text.C=0.3"])
    train_text.run(other, "none", root / "data", root / "b")
    # Traffic: another sample, cleaned as training's was (HTML stripped: raw reviews' "<br />"
    # raise the out-of-vocabulary rate, itself a drift the monitor finds), mostly unseen.
    traffic = prepare_text.prepare_text(
        read_labelled_text(shared_datasets() / "imdb_reviews.csv.gz", "text", "label", "replace"),
        load_params(PARAMS, [*base, "text.seed=8"]).text,
    )
    reviews = list(traffic.test["text"].sample(600, random_state=7))
    return {"a": root / "a", "b": root / "b", "reviews": reviews}


def _shows(page: Any, section: Any, requests: int) -> None:
    """Reload until the page counts ``requests`` (the server writes telemetry in batches)."""
    deadline = time.monotonic() + 30
    while True:
        page.reload()
        if section.locator(".requests").inner_text() == str(requests):
            return
        assert time.monotonic() < deadline, section.locator(".requests").inner_text()
        time.sleep(0.3)


def _wait_for_version(server: Server, version: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if httpx.get(f"{server.url}/ready").json().get("models", {}).get("text") == version:
            return
        time.sleep(0.2)
    raise AssertionError(f"the server did not load {version}")


def test_the_status_page_in_a_real_browser(
    model_dirs: dict[str, Path], imdb: dict[str, Any], tmp_path: Path, browser: Any
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    releases = work / "releases"
    params = load_params(
        PARAMS,
        [f"retrain.releases_dir={releases}", f"retrain.pointer_file={releases}/serving.json"],
    )
    first = promote(imdb["a"], params, {"why": "first release"})
    slow_version = Manifest.read(imdb["b"]).model_version
    server = start_server_with(
        [sys.executable, str(REPO / "tests" / "serve" / "slow_serve.py")],
        work, {"text": Path(first["release"]), "image": model_dirs["image"]},
        environ={"MLTRAIL_TEST_SLOW_VERSION": slow_version, "MLTRAIL_TEST_SLOW_MS": str(SLOW_MS)},
        pointer_file=str(releases / "serving.json"), monitor_dir=str(work / "monitoring"),
        alias_poll_s=0,
    )  # fmt: skip
    errors: list[str] = []
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        # The API key through the page's form (a browser cannot send a bearer header).
        page.goto(f"{server.url}/status")
        assert page.locator("input[name=key]").is_visible()
        page.fill("input[name=key]", "wrong")
        page.click("button[type=submit]")
        assert page.locator("#login-error").inner_text() == "wrong key"
        # The two 401s so far (the form, the wrong key) are the browser's only console errors
        # ("Failed to load resource"): expected; from here on, none.
        assert len(errors) == 2 and all("401" in e for e in errors), errors
        errors.clear()
        page.fill("input[name=key]", API_KEY)
        page.click("button[type=submit]")
        section = page.locator("#model-text")
        # The live figures over the last 5 minutes: the test's traffic spread over the charts.
        page.goto(f"{server.url}/status?hours=0.08")
        assert section.locator(".version").inner_text() == first["version"]
        lineage = page.locator("#lineage-text").inner_text()
        manifest = Manifest.read(Path(first["release"]))
        assert manifest.params_sha256[:12] in lineage and manifest.model.sha256[:12] in lineage
        assert "mltrail:test" in lineage  # the image tag
        assert section.locator(".requests").inner_text() == "0"

        # Figures move with traffic.
        _send(server, imdb["reviews"][:150])
        _shows(page, section, 150)
        assert "no predictions" not in section.locator(".charts").inner_text()
        out = _monitor(work, Path(first["release"]))
        assert out.startswith("ok:"), out

        # Shifted traffic, then the monitor: a drift decision on the page.
        _send(server, [t for t, _ in shifted(75, 0)])
        _shows(page, section, 300)
        out = _monitor(work, Path(first["release"]))
        assert "drift" in out, out
        page.reload()
        newest = section.locator("table.decisions tr").nth(1).inner_text()
        assert "drift" in newest and ("warn" in newest or "retrain" in newest)
        section.screenshot(path=str(tmp_path / "status-overview.png"))

        # A new version, made slower, replaces it: flagged by the monitor and on the page.
        second = promote(imdb["b"], params, {"why": "retrained"})
        _wait_for_version(server, second["version"])
        _send(server, imdb["reviews"][300:450])
        _shows(page, section, 450)
        out = _monitor(work, Path(second["release"]))
        assert "slower than" in out, out
        page.reload()
        assert section.locator(".version").inner_text() == second["version"]
        flag = page.locator("#regression-text").inner_text()
        assert "Slower than the version it replaced" in flag and first["version"] in flag
        promotions = section.locator("table.promotions").inner_text()
        assert first["version"] in promotions and second["version"] in promotions
        page.locator("#lineage-text").screenshot(path=str(tmp_path / "status-lineage.png"))
        page.locator("#regression-text").screenshot(path=str(tmp_path / "status-regression.png"))
        assert errors == []
    finally:
        server.stop()
    for name in ("status-overview.png", "status-lineage.png", "status-regression.png"):
        assert (tmp_path / name).stat().st_size > 1000
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp_path / name, Path(SCREENSHOTS) / name)
