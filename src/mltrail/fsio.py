"""File-system helpers: hashing, and outputs that appear whole or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dumps_json(data: Any) -> str:
    """Stable JSON (sorted keys, fixed layout) so that equal content gives equal bytes."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: readers see the old file or the new one, never a part."""
    atomic_write_text(path, dumps_json(data))


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _mode(directory: bool) -> int:
    """The permissions a plain open()/mkdir() would give (mkstemp/mkdtemp use 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` only on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(_mode(directory=False))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``final``; swap it in only on success.

    On any exception (including KeyboardInterrupt) the temporary directory is removed and
    ``final`` is left exactly as it was, so a failed stage never leaves half its outputs.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(_mode(directory=True))
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.{os.getpid()}.old")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_json_lines(path: Path, tail_bytes: int | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines log (release history, monitor decisions, retrain log),
    in file order; ``[]`` when the file is not there.

    A line that is not a JSON object is skipped, not fatal: an append cut short (a process
    killed mid-write, a full disk) leaves one, and every record around it still holds.
    ``tail_bytes``: read only the file's last bytes, for a view of the newest records that
    stays fast on a long log (its first line, likely cut, is skipped the same way).
    """
    try:
        with path.open("rb") as f:
            if tail_bytes is not None:
                f.seek(max(f.seek(0, os.SEEK_END) - tail_bytes, 0))
            text = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
