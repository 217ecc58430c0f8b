"""mltrail.fsio: the readers every JSON-lines log goes through."""

from __future__ import annotations

import json
from pathlib import Path

from mltrail.fsio import read_json_lines


def test_a_line_cut_short_is_skipped_and_the_records_around_it_kept(tmp_path: Path) -> None:
    log = tmp_path / "history.jsonl"
    records = [{"version": f"v{i}", "time": float(i)} for i in range(3)]
    lines = [json.dumps(r) for r in records]
    # A killed writer's half line in the middle, a stray non-object, an empty line, then a
    # final append cut short with no newline.
    log.write_text(
        f'{lines[0]}\n{{"version": "v-half", "ti\n[1, 2]\n\n{lines[1]}\n{lines[2]}\n{{"version"'
    )
    assert read_json_lines(log) == records


def test_a_missing_log_reads_as_empty(tmp_path: Path) -> None:
    assert read_json_lines(tmp_path / "none.jsonl") == []
    assert read_json_lines(tmp_path) == []  # a folder where the log should be


def test_the_tail_holds_the_newest_records_only(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    log.write_text("".join(json.dumps({"n": i, "pad": "x" * 80}) + "\n" for i in range(1000)))
    tail = read_json_lines(log, tail_bytes=2000)
    numbers = [r["n"] for r in tail]
    # The cut first line is dropped; what remains is the contiguous newest run of records.
    assert numbers == list(range(1000 - len(numbers), 1000))
    assert 15 <= len(numbers) <= 21
    assert read_json_lines(log, tail_bytes=10**9) == read_json_lines(log)
