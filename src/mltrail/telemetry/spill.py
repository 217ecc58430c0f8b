"""A sink's files beside the server: its spill file (records it had not taken at shutdown) and
its quarantine file (records it refused for their data).

Both are JSON lines of the records' ``dataclasses.asdict`` form, written with ``json.dumps``'s
default ASCII escapes, so any text a request brought in (a lone surrogate included) can be
written, and read back exactly as it was. The spill file is replaced whole and atomically (a
failed write leaves the previous one as it was); the quarantine file is only appended to, one
whole line per ``write`` call.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from mltrail.fsio import atomic_file
from mltrail.telemetry.record import Record, record_from_dict

log = logging.getLogger("mltrail.telemetry")


class SpillFile:
    """``<folder>/<sink>.jsonl`` and ``<folder>/<sink>.quarantine.jsonl``."""

    def __init__(self, folder: Path, sink: str) -> None:
        self.path = folder / f"{sink}.jsonl"
        self.quarantine = folder / f"{sink}.quarantine.jsonl"

    def read(self) -> tuple[list[Record], int]:
        """The records of the spill file, and how many of its lines could not be read (each
        logged with its line number): a file cut short by a crash or a full disk loses its
        last line, not the server's start."""
        if not self.path.is_file():
            return [], 0
        records: list[Record] = []
        bad = 0
        with self.path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(record_from_dict(json.loads(line)))
                except (ValueError, TypeError, AttributeError) as exc:
                    bad += 1
                    log.error(
                        "telemetry spill file %s, line %d cannot be read, skipped (%s: %s)",
                        self.path,
                        number,
                        type(exc).__name__,
                        exc,
                    )
        log.info("telemetry spill file %s: %d records to send", self.path, len(records))
        return records, bad

    def write(self, records: Iterable[Record]) -> None:
        """Replace the spill file with ``records`` (atomically: on an error, such as a full
        disk, the previous file is left whole and the error raised)."""
        with atomic_file(self.path) as tmp, tmp.open("w", encoding="ascii") as f:
            for record in records:
                f.write(json.dumps(asdict(record)) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        """Every record of the spill file has been delivered (or quarantined, or dropped and
        counted): the file goes."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("telemetry spill file %s cannot be removed: %s", self.path, exc)

    def quarantine_record(self, record: Record, exc: BaseException) -> None:
        """Append ``record`` with its error as one line; an error here is logged, not raised
        (the writer must go on)."""
        line = json.dumps(
            {
                "time": time.time(),
                "error": f"{type(exc).__name__}: {exc}",
                "record": asdict(record),
            }
        )
        try:
            self.quarantine.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.quarantine, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode("ascii"))
            finally:
                os.close(fd)
        except OSError as error:
            log.error(
                "telemetry quarantine file %s cannot be written (%s); the record was: %s",
                self.quarantine,
                error,
                line,
            )
