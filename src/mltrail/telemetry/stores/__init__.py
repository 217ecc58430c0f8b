"""Telemetry stores by URI scheme, as mlflow's store registry: one builder per scheme, each
importing its store (and its driver) only when a URI asks for it.

======================================  ==================================================
``telemetry.db``, ``sqlite:///t.db``    :class:`~.sqlite.SQLiteStore` (a bare path is SQLite)
``postgresql://``, ``postgres://``,     :class:`~.postgres.PostgresStore` (psycopg, from
``postgresql+psycopg://``               the serve extra)
======================================  ==================================================

A new store is a module with a class that implements :class:`TelemetryStore`, and one
:func:`register` call here; the contract tests (tests/telemetry/test_stores.py) run over every
registered store. An unknown scheme is an error that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mltrail.errors import ParamsError
from mltrail.telemetry.stores.base import TelemetryStore


@dataclass(frozen=True)
class StoreKind:
    name: str
    """The store's (and its sink's) name: ``sqlite``, ``postgres``."""
    schemes: tuple[str, ...]
    """URI schemes it answers (what comes before ``://``)."""
    example: str
    build: Callable[[str], TelemetryStore]
    bare_paths: bool = False
    """Whether a URI without a scheme (a file path) is this store."""


_KINDS: dict[str, StoreKind] = {}


def register(kind: StoreKind) -> None:
    _KINDS[kind.name] = kind


def store_kinds() -> list[StoreKind]:
    """Every registered store, in registration order."""
    return list(_KINDS.values())


def _kind_of(uri: str) -> StoreKind:
    scheme = uri.partition("://")[0].lower() if "://" in uri else None
    for kind in _KINDS.values():
        if (scheme in kind.schemes) if scheme else kind.bare_paths:
            return kind
    choices = "; ".join(f"{k.name}: {k.example}" for k in _KINDS.values())
    raise ParamsError(  # the scheme only: a DSN may hold a password
        f"no telemetry store for URIs {scheme or 'without a scheme'}://...",
        hint=f"the stores: {choices}",
    )


def open_store(uri: str) -> TelemetryStore:
    """The store ``uri`` names. Nothing is opened yet: a store connects when it is used."""
    return _kind_of(uri).build(uri)


def _sqlite(uri: str) -> TelemetryStore:
    from mltrail.telemetry.stores.sqlite import SQLiteStore

    return SQLiteStore.from_uri(uri)


def _postgres(uri: str) -> TelemetryStore:
    try:
        from mltrail.telemetry.stores.postgres import PostgresStore
    except ImportError as exc:
        raise ParamsError(
            f"the PostgreSQL telemetry store needs {exc.name or 'psycopg'}",
            hint="pip install 'mltrail[serve]'",
        ) from None
    return PostgresStore(uri)


register(StoreKind("sqlite", ("sqlite",), "sqlite:///PATH or a path", _sqlite, bare_paths=True))
register(
    StoreKind(
        "postgres",
        ("postgresql", "postgresql+psycopg", "postgres"),
        "postgresql://user@host:5432/db",
        _postgres,
    )
)
