"""``mltrail init``: a project of the user's own, in a folder outside this repository, on a CSV
with other column names and string labels; and the wheel that ships it."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from mltrail.config import load_params
from mltrail.errors import DataError, MltrailError
from mltrail.fsio import sha256_file
from tests.conftest import REPO, free_port, wait_until_ready

BIN = Path(sys.executable).parent
CLASSES = ("good", "bad", "meh")
WORDS = {
    "good": ["great", "wonderful", "superb", "loved", "excellent", "delightful", "brilliant",
             "charming"],
    "bad": ["awful", "terrible", "boring", "hated", "poor", "dreadful", "clumsy", "tedious"],
    "meh": ["average", "okay", "fine", "mediocre", "plain", "passable", "ordinary",
            "forgettable"],
}  # fmt: skip
FILLER = ["the", "a", "this", "movie", "plot", "actor", "scene", "story", "film", "music",
          "ending", "cast", "pace"]  # fmt: skip


def write_reviews(path: Path, per_class: int = 100, seed: int = 0) -> Path:
    """A shop's review export: its own column names, string labels, learnable but noisy."""
    rng = random.Random(seed)
    rows = []
    for i in range(per_class * len(CLASSES)):
        label = CLASSES[i % len(CLASSES)]
        other = rng.choice([c for c in CLASSES if c != label])
        words = [*rng.sample(FILLER, 6), *rng.sample(WORDS[label], 2), rng.choice(WORDS[other])]
        rng.shuffle(words)
        rows.append((f"r{i:04d}", " ".join(words) + f" (order {i})", label, rng.randint(1, 5)))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review_id", "review_body", "sentiment", "helpful_votes"])
        writer.writerows(rows)
    return path


def env(**extra: str) -> dict[str, str]:
    return os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "WANDB_MODE": "offline",
        # git commits whatever this machine's git config says
        "GIT_AUTHOR_NAME": "Test User", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test User", "GIT_COMMITTER_EMAIL": "test@example.com",
    } | extra  # fmt: skip


def run(args: list[str], cwd: Path, **extra: str) -> str:
    result = subprocess.run(args, cwd=cwd, env=env(**extra), capture_output=True, text=True)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


INIT = ["init", "shop-reviews", "--text-column", "review_body", "--label-column", "sentiment"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mltrail init`` + ``dvc repro``, as a user types them, in a folder of their own."""
    root = tmp_path_factory.mktemp("user")
    assert REPO not in root.parents
    csv_file = write_reviews(root / "my reviews.csv")
    out = run([str(BIN / "mltrail"), *INIT, "--text-csv", csv_file.name], root)
    assert "300 rows" in out and "3 classes (bad, good, meh)" in out, out
    project = root / "shop-reviews"
    run(["dvc", "repro"], project)
    return project


@pytest.mark.slow
def test_init_makes_a_git_and_dvc_project_of_its_own(project: Path) -> None:
    params = load_params(project / "params.yaml", base=project)
    assert params.text.text_column == "review_body" and params.text.label_column == "sentiment"
    # Written relative (the project can move), a name that needs no quoting.
    assert 'path: "data/raw/my_reviews.csv"' in (project / "params.yaml").read_text()
    assert params.text.source.path == str(project / "data/raw/my_reviews.csv")
    original = project.parent / "my reviews.csv"
    assert params.text.source.path_sha256 == sha256_file(original)
    assert params.cifar10 is None and params.retrain.stage == "train_text_mlflow"
    assert (project / "data/raw/my_reviews.csv").read_bytes() == original.read_bytes()
    assert (project / "data/raw/my_reviews.csv.dvc").is_file()  # versioned by DVC
    assert "url = ../dvc-remote" in (project / ".dvc/config").read_text()
    assert "/models/" in (project / ".gitignore").read_text()
    assert "dvc repro" in (project / "README.md").read_text()
    assert "src/mltrail" not in (project / "dvc.yaml").read_text()
    tracked = run(["git", "ls-files"], project).split()
    expected = {"params.yaml", "dvc.yaml", ".gitignore", "README.md", ".dvc/config",
                "data/raw/my_reviews.csv.dvc", "data/feedback/text/README.md"}  # fmt: skip
    assert expected <= set(tracked)
    assert "data/raw/my_reviews.csv" not in tracked  # the bytes are DVC's, not git's
    assert run(["git", "log", "--format=%s"], project).startswith("mltrail init:")


@pytest.mark.slow
def test_repro_trains_on_the_string_labels(project: Path) -> None:
    manifest = json.loads((project / "models/text/mlflow/manifest.json").read_text())
    assert manifest["model"]["info"]["classes"] == ["bad", "good", "meh"]
    assert manifest["stage"] == "train_text_mlflow" and manifest["git"]["commit"]
    metrics = json.loads((project / "models/text/mlflow/metrics.json").read_text())
    assert metrics["accuracy"] > 0.8
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project)
    lineage = ""
    deadline = time.monotonic() + 60  # the MLflow export runs in the background
    while "runs:/" not in lineage and time.monotonic() < deadline:
        lineage = run([str(BIN / "mltrail"), "lineage", "models/text/mlflow"], project)
        time.sleep(0.5)
    assert manifest["git"]["commit"] in lineage and "runs:/" in lineage, lineage


@pytest.mark.slow
def test_serve_and_monitor_work_in_the_project(project: Path) -> None:
    port = free_port()
    log = project / "server.log"
    server = subprocess.Popen(
        [str(BIN / "mltrail"), "serve", "--text-model", "models/text/mlflow", "--port", str(port)],
        cwd=project, env=env(MLTRAIL_API_KEY="k"), stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, server, log)
        texts = [f"{' '.join(random.Random(i).sample(FILLER, 5))} {WORDS[c][i % 8]} "
                 f"{WORDS[c][(i + 3) % 8]}" for i in range(40) for c in CLASSES]  # fmt: skip
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer k"}) as client:
            body = client.post("/predict/text", json={"texts": texts}).json()
            one = client.post("/predict/text", json={"text": "a wonderful brilliant film"})
            first = body["predictions"][0]
            feedback = client.post("/feedback", json={"prediction_id": first["prediction_id"],
                                                      "label": first["label"]})  # fmt: skip
        assert one.json()["predictions"][0]["class_name"] == "good"
        names = [p["class_name"] for p in body["predictions"]]
        assert set(names) <= set(CLASSES)
        assert sum(n == c for n, c in zip(names, [c for _ in range(40) for c in CLASSES],
                                          strict=True)) > 100  # fmt: skip
        assert feedback.status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    summary = json.loads(run([str(BIN / "mltrail"), "monitor", "--json"], project))
    assert summary["predictions"] == len(texts) + 1  # every prediction reached telemetry
    assert set(summary["class_mix"]) == set(CLASSES) and summary["feedback"]["labelled"] == 1
    check = run([str(BIN / "mltrail"), "monitor", "--model", "models/text/mlflow",
                 "--out", "monitoring"], project)  # fmt: skip
    assert "text model train_text_mlflow@" in check, check
    assert (project / "monitoring/report.html").is_file()


# -- refusals: checked before anything is written ------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_missing_column_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    from mltrail.project import init_project

    csv_file = write_reviews(tmp_path / "reviews.csv", per_class=5)
    with pytest.raises(DataError, match=r"no column 'stars' \(given as --label-column\)") as info:
        init_project(tmp_path / "p", csv_file, "review_body", "stars")
    assert "'sentiment'" in str(info.value)  # the columns it has
    with pytest.raises(DataError, match=r"no column 'body' \(given as --text-column\)"):
        init_project(tmp_path / "p", csv_file, "body", "sentiment")
    with pytest.raises(DataError, match="no such file"):
        init_project(tmp_path / "p", tmp_path / "nope.csv", "review_body", "sentiment")
    assert not (tmp_path / "p").exists() and _leftovers(tmp_path) == []


def test_one_class_or_a_text_column_as_labels_is_refused(tmp_path: Path) -> None:
    from mltrail.project import init_project

    one = tmp_path / "one.csv"
    one.write_text("body,stars\nfine film,5\ngreat film,5\n")
    with pytest.raises(DataError, match=r"holds one class \('5'\); a classifier needs at least"):
        init_project(tmp_path / "p", one, "body", "stars")
    swapped = write_reviews(tmp_path / "reviews.csv", per_class=5)
    with pytest.raises(DataError, match="have a single row") as info:
        init_project(tmp_path / "p", swapped, "sentiment", "review_body")
    assert "is --label-column the column of classes" in str(info.value)
    assert not (tmp_path / "p").exists()


def test_a_non_empty_folder_is_refused_even_with_force(tmp_path: Path) -> None:
    from mltrail.cli import main

    csv_file = write_reviews(tmp_path / "reviews.csv", per_class=5)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    args = ["init", str(mine), "--text-csv", str(csv_file), "--text-column", "review_body",
            "--label-column", "sentiment"]  # fmt: skip
    assert main(args) == 1
    assert main([*args, "--force"]) == 1
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert _leftovers(tmp_path) == []


def test_a_failure_while_building_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mltrail import project

    def broken(folder: Path, *args: str) -> None:
        assert (folder / "params.yaml").is_file()  # half made, in the temporary folder
        raise MltrailError("dvc init failed")

    monkeypatch.setattr(project, "_dvc", broken)
    csv_file = write_reviews(tmp_path / "reviews.csv", per_class=5)
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "new", tmp_path / "empty"):
        with pytest.raises(MltrailError, match="dvc init failed"):
            project.init_project(target, csv_file, "review_body", "sentiment", "none")
    assert not (tmp_path / "new").exists() and list((tmp_path / "empty").iterdir()) == []
    assert _leftovers(tmp_path) == []


def test_any_column_name_renders_as_valid_params() -> None:
    import yaml

    from mltrail.config import validate_params
    from mltrail.project import CsvSummary, render

    odd_text, odd_label = 'Review: "body" # 1', "stars'"
    files = render(
        "my shop/reviews", data_file="data/raw/r.csv", sha256="0" * 64, text_column=odd_text,
        label_column=odd_label, tracker="mlflow,wandb", summary=CsvSummary(9, ["a", "b"]),
    )  # fmt: skip
    params = validate_params(yaml.safe_load(files["params.yaml"]))
    assert (params.text.text_column, params.text.label_column) == (odd_text, odd_label)
    assert params.tracking.experiment == "my_shop_reviews"
    assert params.retrain.stage == "train_text_mlflow_wandb"
    stages = yaml.safe_load(files["dvc.yaml"])["stages"]
    assert list(stages) == ["prepare_data_text", "train_text_mlflow_wandb"]
    assert "--tracker mlflow,wandb" in stages["train_text_mlflow_wandb"]["cmd"]
    assert "data/raw/r.csv" in stages["prepare_data_text"]["deps"]
    numeric = render("2024", data_file="data/raw/1.csv", sha256="1" * 63 + "e",
                     text_column="1", label_column="true", tracker="none",
                     summary=CsvSummary(9, ["a", "b"]))  # fmt: skip
    params = validate_params(yaml.safe_load(numeric["params.yaml"]))  # strings stay strings
    assert params.tracking.experiment == "2024" and params.text.label_column == "true"


def test_the_tracker_choices_are_the_projects() -> None:
    from mltrail.cli import build_parser
    from mltrail.project import TRACKERS

    verbs = next(a for a in build_parser()._actions if a.dest == "verb")
    init = verbs.choices["init"]  # type: ignore[index]
    tracker = next(a for a in init._actions if a.dest == "tracker")
    assert list(tracker.choices) == list(TRACKERS)


@pytest.mark.slow
def test_force_remakes_a_fresh_project_in_place(tmp_path: Path) -> None:
    """An empty folder (here the shell's working directory) keeps its inode; --force re-makes
    a project that has not run yet, with other columns."""
    csv_file = write_reviews(tmp_path / "reviews.csv", per_class=10)
    folder = tmp_path / "here"
    folder.mkdir()
    inode = folder.stat().st_ino
    base = [str(BIN / "mltrail"), "init", ".", "--text-csv", str(csv_file), "--tracker", "none"]
    run([*base, "--text-column", "review_body", "--label-column", "sentiment"], folder)
    assert folder.stat().st_ino == inode and (folder / "dvc.yaml").is_file()
    assert "train_text_baseline" in (folder / "dvc.yaml").read_text()
    again = [*base, "--text-column", "review_body", "--label-column", "helpful_votes"]
    result = subprocess.run(again, cwd=folder, env=env(), capture_output=True, text=True)
    assert result.returncode == 1 and "--force re-makes this project" in result.stderr
    run([*again, "--force"], folder)
    assert load_params(folder / "params.yaml").text.label_column == "helpful_votes"
    assert _leftovers(tmp_path) == []


# -- the wheel -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_ships_init_and_its_templates(tmp_path: Path) -> None:
    """Build the wheel from a copy of the sources (the repository stays clean), check what it
    holds, install it alone into a folder and run ``mltrail init`` from there."""
    from mltrail.project import TEMPLATES

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # fmt: skip
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", "dist", "./source"], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("mltrail-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "mltrail = mltrail.cli:main" in zf.read(entry_points).decode()
    assert {f"mltrail/templates/project/{t}" for t in TEMPLATES} <= names
    assert {"mltrail/project.py", "mltrail/cli/__init__.py", "mltrail/serve/app.py"} <= names

    site = tmp_path / "site"
    run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], tmp_path)
    installed = {"PYTHONPATH": str(site)}  # before the development copy on sys.path
    where = run([sys.executable, "-c", "import mltrail.project as p; print(p.__file__)"],
                tmp_path, **installed)  # fmt: skip
    assert Path(where.strip()).is_relative_to(site)
    csv_file = write_reviews(tmp_path / "reviews.csv", per_class=10)
    run([sys.executable, "-m", "mltrail", *INIT, "--text-csv", str(csv_file)], tmp_path,
        **installed)  # fmt: skip
    made = tmp_path / "shop-reviews"
    params = load_params(made / "params.yaml", base=made)
    assert params.text.source.path == str(made / "data/raw/reviews.csv")
    assert (made / ".dvc/config").is_file() and (made / "data/raw/reviews.csv.dvc").is_file()
