"""PostgreSQL bulk-load mode: load into tables without their secondary indexes and constraints,
then rebuild them once (the classic way to make COPY fast: maintaining a dozen btree and two GIN
trigram indexes row by row, and checking every foreign key per row, costs far more than building
them afterwards). Used only for large loads into empty tables (the demo and the benchmarks).

Primary keys stay (ids are pre-assigned). Everything dropped is recreated from its own
definition (`pg_get_indexdef` / `pg_get_constraintdef`), in a `finally`, so an interrupted load
never leaves a table without its indexes; rebuilding validates uniqueness and foreign keys.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connection


@dataclass
class Dropped:
    indexes: list[tuple[str, str]] = field(default_factory=list)  # (name, CREATE INDEX …)
    uniques: list[tuple[str, str, str]] = field(default_factory=list)  # (table, name, definition)
    foreign_keys: list[tuple[str, str, str]] = field(default_factory=list)
    rebuild_seconds: float = 0.0


def _tables_empty(cur, tables: list[str]) -> bool:
    for t in tables:
        cur.execute(f'SELECT EXISTS (SELECT 1 FROM "{t}")')
        if cur.fetchone()[0]:
            return False
    return True


def _drop(cur, tables: list[str]) -> Dropped:
    d = Dropped()
    cur.execute(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype "
        "FROM pg_constraint c WHERE c.contype IN ('f', 'u') AND c.conrelid = ANY(%s::regclass[])",
        [tables],
    )
    for table, name, definition, kind in cur.fetchall():
        (d.foreign_keys if kind == "f" else d.uniques).append((table.strip('"'), name, definition))
    cur.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = ANY(%s::regclass[]) AND NOT i.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        [tables],
    )
    d.indexes = [(name.strip('"'), definition) for name, definition in cur.fetchall()]
    for table, name, _ in d.foreign_keys + d.uniques:
        cur.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT IF EXISTS "{name}"')
    for name, _ in d.indexes:
        cur.execute(f'DROP INDEX IF EXISTS "{name}"')
    return d


def _run_parallel(statements: list[str], workers: int) -> None:
    if not statements:
        return
    params = connection.get_connection_params()

    def run(sql: str) -> None:
        raw = connection.get_new_connection(params)
        try:
            raw.autocommit = True
            with raw.cursor() as cur:
                cur.execute("SET maintenance_work_mem = '512MB'")
                cur.execute(sql)
        finally:
            raw.close()

    # the slowest (GIN) first so they overlap with the many small btree builds
    ordered = sorted(statements, key=lambda s: "USING gin" not in s)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for f in [pool.submit(run, sql) for sql in ordered]:
            f.result()


def _restore(d: Dropped, workers: int) -> None:
    t0 = time.perf_counter()
    _run_parallel([definition for _, definition in d.indexes], workers)
    _run_parallel(
        [f'ALTER TABLE "{t}" ADD CONSTRAINT "{n}" {definition}' for t, n, definition in d.uniques], workers
    )
    _run_parallel(
        [f'ALTER TABLE "{t}" ADD CONSTRAINT "{n}" {definition}' for t, n, definition in d.foreign_keys],
        workers,
    )
    d.rebuild_seconds = time.perf_counter() - t0


@contextmanager
def bulk_load(tables: list[str], *, min_rows: int, rows: int, workers: int = 2) -> Iterator[Dropped | None]:
    """Inside: the tables have no secondary indexes or constraints (when on PostgreSQL, not inside
    a transaction, loading at least `min_rows` into empty tables); otherwise a no-op."""
    if connection.vendor != "postgresql" or rows < min_rows or connection.in_atomic_block:
        yield None
        return
    with connection.cursor() as cur:
        if not _tables_empty(cur, tables):
            yield None
            return
        dropped = _drop(cur, tables)
    try:
        yield dropped
    finally:
        _restore(dropped, workers)
        with connection.cursor() as cur:
            for t in tables:
                cur.execute(f'ANALYZE "{t}"')
