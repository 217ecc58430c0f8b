"""Small files in the official formats, built by the tests (no downloads, no shared data)."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

CIFAR_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_csv(
    path: Path, rows: Iterable[tuple[str, object]], columns: Sequence[str] = ("text", "label")
) -> Path:
    frame = pd.DataFrame(list(rows), columns=list(columns))
    frame.to_csv(path, index=False)
    return path


def text_rows(n_per_class: int, classes: Iterable[object] = (0, 1)) -> list[tuple[str, object]]:
    """Distinct, class-dependent texts (so a model could learn them), ``n_per_class`` each."""
    return [
        (f"review {i} of class {c}: <br />a {'good' if c else 'bad'} film number {i}", c)
        for c in classes
        for i in range(n_per_class)
    ]


def write_aclimdb_archive(path: Path, per_folder: int = 3, with_unsup: bool = True) -> Path:
    """An ``aclImdb_v1.tar.gz`` in the official layout, members in shuffled order."""
    members: list[tuple[str, bytes]] = []
    for split in ("train", "test"):
        for folder, rating in (("neg", 2), ("pos", 9)):
            for review_id in range(per_folder):
                text = f"{split} {folder} review {review_id}<br /><br />ends here."
                members.append(
                    (f"aclImdb/{split}/{folder}/{review_id}_{rating}.txt", text.encode())
                )
    if with_unsup:
        members.append(("aclImdb/train/unsup/0_0.txt", b"unlabelled"))
    members.append(("aclImdb/README", b"readme"))
    members.reverse()  # the reader must sort, not rely on archive order
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            _add_bytes(tar, name, data)
    return path


def cifar_batch(labels: list[int], seed: int, batch_label: bytes) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    return {
        b"batch_label": batch_label,
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }


def write_cifar_archive(
    path: Path,
    per_class_per_batch: int = 2,
    test_per_class: int = 3,
    skip: Iterable[str] = (),
    override: dict[str, bytes] | None = None,
) -> Path:
    """A ``cifar-10-python.tar.gz`` in the official layout: protocol-2 pickles, bytes keys."""
    members: dict[str, bytes] = {}
    for i in range(1, 6):
        labels = [c for c in range(10) for _ in range(per_class_per_batch)]
        batch = cifar_batch(labels, seed=i, batch_label=f"training batch {i} of 5".encode())
        members[f"data_batch_{i}"] = pickle.dumps(batch, protocol=2)
    test_labels = [c for c in range(10) for _ in range(test_per_class)]
    members["test_batch"] = pickle.dumps(
        cifar_batch(test_labels, seed=99, batch_label=b"testing batch 1 of 1"), protocol=2
    )
    meta = {
        b"num_cases_per_batch": 10 * per_class_per_batch,
        b"label_names": [c.encode() for c in CIFAR_CLASSES],
        b"num_vis": 3072,
    }
    members["batches.meta"] = pickle.dumps(meta, protocol=2)
    members["readme.html"] = b"<html></html>"
    members.update(override or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            if name not in set(skip):
                _add_bytes(tar, f"cifar-10-batches-py/{name}", data)
    return path


def truncate(path: Path, keep_fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def gzip_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data))
    return path
