"""``/feedback``'s lookups in the store reuse a connection per thread: a flood of unknown ids
opened one connection per request (text throughput 1,080 -> 143 req/s in the issue's run).
A kept connection must still see what the writer stores after it was opened."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mltrail.telemetry.stores.sqlite import SQLiteStore
from tests.telemetry.helpers import prediction


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str = "connect") -> list[int]:
    """Count the connections ``module.connect`` opens (each still a real one)."""
    opened = [0]
    real: Callable[..., Any] = getattr(module, name)

    def connect(*args: Any, **kwargs: Any) -> Any:
        opened[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, connect)
    return opened


def _lookup(store: Any, prediction_id: str) -> bool:
    # has_prediction is on main and here alike: what /feedback asked before.
    return bool(store.has_prediction(prediction_id))


def test_sqlite_lookups_reuse_a_connection_per_thread_and_see_new_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    assert not _lookup(store, "p0")  # no file yet: nothing stored, nothing kept open
    store.write([prediction(0)])
    opened = _counting(monkeypatch, sqlite3)
    assert [_lookup(store, f"unknown-{i}") for i in range(200)] == [False] * 200
    assert _lookup(store, "p0")
    store.write([prediction(1)])  # written after the lookup connection was opened
    assert _lookup(store, "p1")
    assert opened[0] == 1
    found: list[bool] = []
    thread = threading.Thread(target=lambda: found.append(_lookup(store, "p1")))
    thread.start()
    thread.join()
    assert found == [True] and opened[0] == 2  # one more for the other thread
    store.close()


def test_postgres_lookups_reuse_a_connection_per_thread(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    psycopg = pytest.importorskip("psycopg")
    from mltrail.telemetry.stores.postgres import PostgresStore

    store = PostgresStore(postgres_dsn)
    store.write([prediction(0)])
    opened = _counting(monkeypatch, psycopg)
    assert [_lookup(store, f"unknown-{i}") for i in range(50)] == [False] * 50
    store.write([prediction(1)])
    assert _lookup(store, "p0") and _lookup(store, "p1")
    assert opened[0] == 1
    store.close()
