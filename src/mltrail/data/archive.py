"""Reading tar archives with one clear error for every way an archive can be broken."""

from __future__ import annotations

import contextlib
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from mltrail.errors import DataError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


@contextlib.contextmanager
def reading_archive(path: Path) -> Iterator[tarfile.TarFile]:
    """Open ``path`` as a (compressed) tar; any read error becomes a :class:`DataError`.

    The tar is read as a stream, member by member: nothing is extracted to disk.
    """
    try:
        with tarfile.open(path, mode="r|*") as tar:
            yield tar
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(
            f"the archive {path} is truncated or corrupt ({type(exc).__name__}: {exc})",
            hint="delete it and fetch it again (a mirror copy or the official URL)",
        ) from None


def read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:  # a directory or a link: callers only ask for regular files
        raise DataError(f"archive member {member.name} is not a regular file")
    with handle:
        return handle.read()
