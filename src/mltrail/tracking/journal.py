"""The run journal: what a training run told its trackers, on local disk, in order.

Training appends one JSON line per call and never waits on a backend. Each line is flushed
whole, so a reader sees complete records only; a crash loses at most the line being written.
Artifacts and models are hard-linked (or copied) into the run folder when they are logged, so
the export sends exactly what was logged even if the stage's outputs are replaced later.

Layout of one run: ``<journal_dir>/<run_id>/journal.jsonl``, ``files/``, ``export-<backend>.json``
(per backend: ``done`` with where the run is, or ``pending`` with the last error), ``export.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mltrail.errors import MltrailError
from mltrail.fsio import write_json

JOURNAL = "journal.jsonl"
FILES = "files"


def state_path(run_dir: Path, backend: str) -> Path:
    return run_dir / f"export-{backend}.json"


def read_state(run_dir: Path, backend: str) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(state_path(run_dir, backend).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def write_state(run_dir: Path, backend: str, state: dict[str, Any]) -> None:
    write_json(state_path(run_dir, backend), state)


class JournalWriter:
    """Appends records to ``<run_dir>/journal.jsonl``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        (run_dir / FILES).mkdir(parents=True, exist_ok=True)
        self._file = (run_dir / JOURNAL).open("a", encoding="utf-8")

    def append(self, op: str, **fields: Any) -> None:
        record = {"op": op, "time": time.time(), **fields}
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()

    def keep_file(self, path: Path) -> Path:
        """Link (or copy) ``path`` into the run folder; return the kept path."""
        dest = (
            self.run_dir / FILES / f"{len(list((self.run_dir / FILES).iterdir())):03d}-{path.name}"
        )
        if path.is_dir():
            shutil.copytree(path, dest, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(path), str(dest))
        return dest

    def close(self) -> None:
        self._file.close()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class JournalCorrupt(MltrailError):
    """A complete line of a journal is not a record (a disk error, a hand edit): the run
    cannot be replayed as it was logged."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(
            f"{path} line {line} is not a journal record ({problem}): run skipped",
            hint=f"repair or remove that line (or move {path.parent} away), then sync again",
        )
        self.path = path
        self.line = line


@dataclass
class JournalReader:
    """Reads complete records from a journal that may still be growing; a complete line that
    is not a record raises :class:`JournalCorrupt` (which file, which line)."""

    run_dir: Path
    _offset: int = 0
    _partial: str = ""
    _line: int = 0

    def new_records(self) -> Iterator[dict[str, Any]]:
        path = self.run_dir / JOURNAL
        if not path.exists():
            return
        with path.open("r", encoding="utf-8") as f:
            f.seek(self._offset)
            chunk = f.read()
            self._offset = f.tell()
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()  # an incomplete last line waits for its newline
        for line in lines:
            self._line += 1
            if line.strip():
                yield self._record(path, line)

    def _record(self, path: Path, line: str) -> dict[str, Any]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JournalCorrupt(path, self._line, f"not JSON: {exc.msg}") from None
        if not isinstance(record, dict) or not isinstance(record.get("op"), str):
            raise JournalCorrupt(path, self._line, "no op")
        return record


def all_records(run_dir: Path) -> list[dict[str, Any]]:
    return list(JournalReader(run_dir).new_records())


def writer_alive(start: dict[str, Any]) -> bool:
    """Whether the process that writes this journal still runs (same host only)."""
    if start.get("host") != os.uname().nodename:
        return True  # cannot tell: assume it does
    return pid_alive(int(start["pid"]))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie: exited, not yet reaped by its parent
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
