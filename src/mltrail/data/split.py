"""Seeded, stratified subsets and splits with errors that say which class is short."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import train_test_split

from mltrail.errors import DataError

Indices = NDArray[np.intp]


def _check_classes(labels: NDArray[np.generic], names: list[str] | None, what: str) -> None:
    values, counts = np.unique(labels, return_counts=True)
    if len(values) < 2:
        only = _name(values[0], names) if len(values) else "none"
        raise DataError(
            f"{what}: the data holds a single class ({only}); a classifier needs at least two",
            hint="check the label column, or the sample size",
        )
    short = [(_name(v, names), int(c)) for v, c in zip(values, counts, strict=True) if c < 2]
    if short:
        listed = ", ".join(f"{n!r} ({c} row)" for n, c in short)
        raise DataError(
            f"{what}: a stratified split needs at least 2 rows of every class; too few: {listed}",
            hint="drop those rows, merge their classes, or use more data",
        )


def _name(value: object, names: list[str] | None) -> str:
    return names[int(value)] if names is not None else str(value)  # type: ignore[call-overload]


def stratified_subset(
    labels: NDArray[np.generic],
    size: int | None,
    seed: int,
    what: str,
    names: list[str] | None = None,
) -> Indices:
    """Indices of a seeded, stratified subset of ``size`` rows (all rows when ``size`` is None)."""
    n = len(labels)
    if size is None or size == n:
        return np.arange(n)
    if size > n:
        raise DataError(
            f"{what}={size} is larger than the {n} rows available",
            hint=f"set {what} to at most {n}, or to null to use every row",
        )
    _check_classes(labels, names, what)
    try:
        chosen, _ = train_test_split(
            np.arange(n), train_size=size, stratify=labels, random_state=seed
        )
    except ValueError as exc:  # e.g. fewer rows asked for than there are classes
        raise DataError(f"cannot draw a stratified {what} of {size} rows: {exc}") from None
    return np.sort(chosen)


def stratified_split(
    labels: NDArray[np.generic],
    test_fraction: float,
    seed: int,
    names: list[str] | None = None,
) -> tuple[Indices, Indices]:
    """Seeded, stratified (train, test) indices; both shuffled by the seed."""
    _check_classes(labels, names, "split")
    try:
        train, test = train_test_split(
            np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed
        )
    except ValueError as exc:  # e.g. a test part smaller than the number of classes
        raise DataError(
            f"cannot split {len(labels)} rows with test_fraction={test_fraction}: {exc}",
            hint="use more rows or a larger test_fraction",
        ) from None
    return train, test
