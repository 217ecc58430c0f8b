"""The DVC remote in S3-compatible object storage: push and pull through moto's real S3 server
(a stand-in for MinIO or AWS S3) with DVC's own command line and ``mltrail dvc``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import S3Bucket

pytest.importorskip("dvc_s3")
BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    # HOME of the test's own: no global or user DVC config of the developer's is read.
    env = os.environ | {
        "HOME": str(cwd.parent / "home"),
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done


def _project(tmp_path: Path, bucket: S3Bucket, remote: str) -> Path:
    (tmp_path / "home").mkdir()
    project = tmp_path / "project"
    project.mkdir()
    _run(["git", "init", "-q"], project)
    _run(["dvc", "init", "-q"], project)
    (project / "data").mkdir()
    (project / "data" / "reviews.csv").write_text("text,label\ngood,1\nbad,0\n")
    (project / "data" / "blob.bin").write_bytes(os.urandom(300_000))
    _run(["dvc", "add", "data"], project)
    _run(["dvc", "remote", "add", "-d", "team", remote], project)
    # The endpoint is the team's (committed); the keys come from the environment, never config.
    _run(["dvc", "remote", "modify", "team", "endpointurl", bucket.endpoint], project)
    return project


@pytest.mark.parametrize("verb", ["dvc", "mltrail dvc"])
def test_push_and_pull_round_trip_through_s3(
    s3_bucket: S3Bucket, tmp_path: Path, verb: str
) -> None:
    project = _project(tmp_path, s3_bucket, f"{s3_bucket.uri}/dvc-store")
    original = (project / "data" / "blob.bin").read_bytes()
    dvc = verb.split()
    _run([*dvc, "push"], project)
    keys = s3_bucket.keys("dvc-store/")
    # Content-addressed: the two files and the folder's listing (.dir), nothing else.
    assert len(keys) == 3 and all(k.startswith("dvc-store/files/md5/") for k in keys), keys
    _run(["rm", "-rf", "data", ".dvc/cache"], project)
    _run([*dvc, "pull"], project)
    assert (project / "data" / "blob.bin").read_bytes() == original
    assert (project / "data" / "reviews.csv").read_text() == "text,label\ngood,1\nbad,0\n"
    assert "in sync" in _run(["dvc", "status", "-c"], project).stdout


def test_a_missing_bucket_fails_the_push_with_dvcs_message(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    project = _project(tmp_path, s3_bucket, "s3://mltrail-never-created/dvc-store")
    done = _run(["mltrail", "dvc", "push"], project, check=False)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    # DVC's own message (it does not name the bucket; `dvc remote list` does).
    assert "The specified bucket does not exist" in said, said
    assert not s3_bucket.keys()  # nothing went to the bucket that does exist
