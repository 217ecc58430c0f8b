"""The pointer file (``retrain.pointer_file``, ``releases/serving.json``): what servers serve.

    {"text": "/abs/releases/text/train_text_mlflow-1a2b3c4d5e6f", "image": "..."}

A source per kind (a model folder or an MLflow URI). ``mltrail promote`` writes it last, after
the release copy and the MLflow alias, and atomically, so a server that watches it (it reloads
when the file changes) never reads half a file; the monitor and ``mltrail retrain`` read the
serving model from it.

Changing one kind's source is a read-modify-write of the whole file: :func:`update` does it
under an exclusive ``fcntl.flock`` on ``<pointer>.lock`` beside it, so that two promotions at
once (say of the text and the image model) cannot both read the old pointer and the second
write drop the first one's source. The lock file is separate from the pointer because the
pointer is replaced by a rename (a lock held on the old inode would not exclude a writer that
opened the new one); readers take no lock (they see the old file or the new one, whole).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from mltrail.contracts.tasks import KINDS, Kind
from mltrail.errors import MltrailError
from mltrail.fsio import write_json


class PointerError(MltrailError):
    """The pointer file exists but is not a pointer."""


class Pointer(BaseModel):
    """A source per server kind; ``None`` where the file names none.

    Keys other than the kinds are ignored, not refused: a server of an older mltrail must keep
    following a pointer that a newer one (with a kind more) wrote. A value that is not a string
    is refused: that file was not written by ``mltrail promote``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    text: str | None = None
    image: str | None = None

    def source(self, kind: Kind) -> str | None:
        value: str | None = getattr(self, kind)
        return value

    def sources(self) -> dict[str, str]:
        """The kinds it names, with their sources."""
        return {kind: source for kind in KINDS if (source := self.source(kind))}

    def with_source(self, kind: Kind, source: str) -> Pointer:
        return self.model_copy(update={kind: source})

    def fill(self, other: Pointer) -> Pointer:
        """This pointer, with ``other``'s source for each kind this one names none."""
        missing = {kind: other.source(kind) for kind in KINDS if not self.source(kind)}
        return self.model_copy(update={k: v for k, v in missing.items() if v})

    @classmethod
    def read(cls, path: Path) -> Pointer:
        """The pointer in ``path``; an empty one when there is no file (nothing promoted yet);
        :class:`PointerError` when the file is not a pointer."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise PointerError(f"cannot read the serving pointer {path}: {exc}") from None
        try:
            return cls.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise PointerError(
                f"{path} is not a serving pointer ({{kind: model folder}}): {exc}",
                hint="`mltrail promote MODEL_DIR` writes it anew (or remove the file)",
            ) from None

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically: a reader sees the old pointer or the new one, whole."""
        write_json(path, self.model_dump(mode="json", exclude_none=True))


def update(path: Path, change: Callable[[Pointer], Pointer]) -> Pointer:
    """Replace the pointer in ``path`` with ``change(current)``, under the pointer's lock;
    return the pointer as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, also when this process dies
        current = Pointer.read(path)
        change(current).write(path)
        return current
    finally:
        os.close(fd)


HISTORY_FILE = "history.jsonl"


def history_of(pointer_path: Path) -> Path:
    """Where every promotion to the pointer in ``pointer_path`` is recorded, one JSON line
    each (``mltrail promote`` appends; the monitor's latency audit and the status page read):
    beside the pointer."""
    return pointer_path.parent / HISTORY_FILE
