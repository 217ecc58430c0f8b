"""Fetch a dataset file: a local path, a mirror folder, or a checksummed download.

Nothing half-downloaded is ever used: a download streams into a temporary file beside its
target, is checked against its sha256, and only then renamed into place.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from tqdm import tqdm

from mltrail.config import MIRROR_ENV, DataSource
from mltrail.errors import DataError
from mltrail.fsio import atomic_file, sha256_file

log = logging.getLogger(__name__)

Origin = Literal["path", "mirror", "download", "cache"]


@dataclass(frozen=True)
class FetchedFile:
    """A local dataset file, verified, and how it was obtained (recorded in the profile)."""

    path: Path
    sha256: str
    origin: Origin
    verified: bool


def url_filename(url: str) -> str:
    name = Path(urlparse(url).path).name
    if not name:
        raise DataError(f"cannot tell a file name from the URL {url!r}")
    return name


def _check(path: Path, expected: set[str], what: str) -> str:
    actual = sha256_file(path)
    if expected and actual not in expected:
        wanted = " or ".join(sorted(expected))
        raise DataError(
            f"checksum mismatch for {what} {path}: sha256 is {actual}, expected {wanted}",
            hint=(
                "the file is corrupt, truncated or a different release: delete it and fetch it "
                "again; if you trust this copy, set its sha256 in params.yaml (source.sha256 "
                "or a source.mirror entry)"
            ),
        )
    return actual


def _mirror_candidates(source: DataSource) -> dict[str, set[str]]:
    """File name -> accepted checksums, in the order they are looked for."""
    names: dict[str, set[str]] = {}
    for entry in source.mirror:
        names.setdefault(entry.file, set()).add(entry.sha256)
    if source.url:
        accepted = names.setdefault(url_filename(source.url), set())
        if source.sha256:
            accepted.add(source.sha256)
    return names


def fetch(
    source: DataSource,
    download_dir: Path,
    mirror_dir: Path | None,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> FetchedFile:
    """Return a verified local copy of ``source`` (see :class:`DataSource` for the order)."""
    if source.path is not None:
        path = Path(source.path).expanduser()
        if not path.is_file():
            raise DataError(
                f"source.path {path} does not exist or is not a file",
                hint="fix the path, or set source.path to null to use the mirror or the URL",
            )
        expected = {source.path_sha256} if source.path_sha256 else set()
        digest = _check(path, expected, "the local file")
        return FetchedFile(path, digest, "path", verified=bool(expected))

    candidates = _mirror_candidates(source)
    if mirror_dir is not None:
        if not mirror_dir.is_dir():
            raise DataError(
                f"the data mirror {mirror_dir} is not a folder",
                hint=f"point data.mirror or ${MIRROR_ENV} at a folder holding the dataset files",
            )
        for name, accepted in candidates.items():
            path = mirror_dir / name
            if path.is_file():
                digest = _check(path, accepted, "the mirror file")
                return FetchedFile(path, digest, "mirror", verified=bool(accepted))
        log.info("mirror %s holds none of %s; trying the URL", mirror_dir, sorted(candidates))

    if source.url is None:
        raise DataError(
            f"no URL for this dataset and no mirror file found (looked for {sorted(candidates)} "
            f"in {mirror_dir or 'no mirror folder'})",
            hint=f"set ${MIRROR_ENV} or data.mirror to a folder holding one of them",
        )
    return _download(source.url, source.sha256, download_dir, timeout_s, progress, candidates)


def _download(
    url: str,
    sha256: str | None,
    download_dir: Path,
    timeout_s: float,
    progress: bool,
    candidates: dict[str, set[str]],
) -> FetchedFile:
    target = download_dir / url_filename(url)
    expected = {sha256} if sha256 else set()
    if target.is_file():
        digest = sha256_file(target)
        if not expected or digest in expected:
            return FetchedFile(target, digest, "cache", verified=bool(expected))
        log.warning("cached %s has the wrong checksum; downloading it again", target)
    if not expected:
        log.warning("no sha256 configured for %s: the download cannot be verified", url)
    try:
        with atomic_file(target) as tmp:
            digest = _stream(url, tmp, timeout_s, progress)
            if expected and digest not in expected:
                raise DataError(
                    f"checksum mismatch for the download of {url}: sha256 is {digest}, "
                    f"expected {sha256}; the partial file was deleted",
                    hint="retry; if the publisher changed the file, update source.sha256",
                )
    except OSError as exc:  # URLError, timeouts and refused connections are all OSErrors
        if isinstance(exc, urllib.error.HTTPError):
            reason: object = f"HTTP {exc.code} {exc.reason}"
        else:
            reason = getattr(exc, "reason", exc)
        names = ", ".join(sorted(candidates)) or url_filename(url)
        raise DataError(
            f"could not download {url}: {reason}",
            hint=(
                f"without network access, put a copy ({names}) in a folder and set "
                f"{MIRROR_ENV}=/that/folder (or data.mirror), or set source.path to the file"
            ),
        ) from None
    return FetchedFile(target, digest, "download", verified=bool(expected))


def _stream(url: str, dest: Path, timeout_s: float, progress: bool) -> str:
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "mltrail"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            dest.open("wb") as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=url_filename(url),
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if total is not None and dest.stat().st_size != total:
            raise DataError(
                f"the download of {url} ended early ({dest.stat().st_size} of {total} bytes)",
                hint="retry; the partial file was deleted",
            )
    return digest.hexdigest()
