"""Bulk writing of generated rows: COPY on PostgreSQL (psycopg 3), executemany on SQLite.

Generators hand over columns (name → list of text values, `loader.null` for NULL) of one table; the writer
puts them in the table's column order, fills the columns it was not given from the field defaults
(so a field added to a model later does not break the demo), and writes them. History tables
(django-simple-history) are filled from the same columns plus the history columns.

On PostgreSQL, COPY runs in a writer thread on the same connection and transaction, so that
Python builds the next chunk while the server ingests the previous one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from itertools import repeat
from typing import NamedTuple

from django.db import connection, models

Column = Sequence[str | None] | str | None


class Write(NamedTuple):
    table: str
    columns: list[str]
    payload: str | list  # COPY text on PostgreSQL, parameter rows on SQLite
    rows: int
    history: bool


class Table:
    """Column layout of one model's table (and of its history table if it has one)."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        self.name = model._meta.db_table
        self.fields = list(model._meta.concrete_fields)
        self.columns = [f.column for f in self.fields]
        self.pk_column = model._meta.pk.column

    def constant(self, column: str) -> str | None:
        field = next(f for f in self.fields if f.column == column)
        if field.has_default():
            return text_value(field.get_default())
        if field.null:
            return None
        raise ValueError(f"{self.name}.{column} has no value, no default and is not nullable")


def text_value(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal | int | float):
        return str(value)
    return str(value)


def history_model(model: type[models.Model]) -> type[models.Model] | None:
    manager = getattr(model, "history", None)
    return getattr(manager, "model", None)


class Loader:
    """Writes chunks of rows; counts rows and seconds per table."""

    def __init__(self, *, pipelined: bool = True, parallel: bool = False) -> None:
        self.vendor = connection.vendor
        self.tables: dict[type[models.Model], Table] = {}
        self.rows: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self._workers: dict[str, tuple[queue.Queue, threading.Thread]] = {}
        self._error: BaseException | None = None
        self._pipelined = pipelined and self.vendor == "postgresql"
        # History tables have no foreign-key constraints: with `parallel` they are copied on a
        # second connection (its own transaction, committed by `commit_side` after the main one).
        # Not inside an outer transaction (tests), whose rows the second connection cannot see.
        self._parallel = self._pipelined and parallel
        self._side = None
        self._lock = threading.Lock()
        # The NULL of a payload: COPY text format spells it \N, executemany takes None.
        self.null = "\\N" if self.vendor == "postgresql" else None

    # --- ids -------------------------------------------------------------------------------
    def reserve_ids(self, model: type[models.Model], count: int, column: str | None = None) -> int:
        """Reserve `count` consecutive primary keys of `model`; returns the first."""
        table = self.table(model)
        column = column or table.pk_column
        with connection.cursor() as cur:
            if self.vendor == "postgresql":
                cur.execute("SELECT pg_get_serial_sequence(%s, %s)", [table.name, column])
                seq = cur.fetchone()[0]
                cur.execute(f'SELECT COALESCE(MAX("{column}"), 0) FROM "{table.name}"')
                top = cur.fetchone()[0]
                cur.execute("SELECT last_value, is_called FROM " + seq)
                last, called = cur.fetchone()
                first = max(top, last if called else last - 1) + 1
                if count:
                    cur.execute("SELECT setval(%s, %s, true)", [seq, first + count - 1])
                return first
            cur.execute(f'SELECT COALESCE(MAX("{column}"), 0) FROM "{table.name}"')
            return cur.fetchone()[0] + 1

    def fix_sequences(self, models_: list[type[models.Model]]) -> None:
        """Set each table's id sequence to its largest id (PostgreSQL; SQLite's AUTOINCREMENT
        follows explicit ids by itself)."""
        if self.vendor != "postgresql":
            return
        with connection.cursor() as cur:
            for model in models_:
                table = self.table(model)
                column = table.pk_column
                cur.execute("SELECT pg_get_serial_sequence(%s, %s)", [table.name, column])
                seq = cur.fetchone()[0]
                if seq:
                    cur.execute(
                        f'SELECT setval(%s, COALESCE((SELECT MAX("{column}") FROM "{table.name}"), 0) + 1, '
                        "false)",
                        [seq],
                    )

    def table(self, model: type[models.Model]) -> Table:
        if model not in self.tables:
            self.tables[model] = Table(model)
        return self.tables[model]

    # --- rows ------------------------------------------------------------------------------
    def _column(self, table: Table, column: str, col, n: int):
        """A list of n values, or one value (str, or the null) repeated on every row."""
        if col is None or isinstance(col, str):
            return repeat(col, n)
        if len(col) != n:
            raise ValueError(f"{table.name}.{column}: {len(col)} values for {n} rows")
        return col

    def _constant(self, table: Table, column: str) -> str | None:
        value = table.constant(column)
        return self.null if value is None else value

    def _columns(self, table: Table, names: list[str], values: dict[str, Column], n: int) -> list:
        return [
            self._column(table, c, values[c], n) if c in values else repeat(self._constant(table, c), n)
            for c in names
        ]

    def rows(self, model: type[models.Model], values: dict[str, Column], n: int) -> list[Write]:
        """One table's chunk of rows."""
        table = self.table(model)
        cols = self._columns(table, table.columns, values, n)
        if self.vendor == "postgresql":
            payload = "\n".join(map("\t".join, zip(*cols, strict=False))) + "\n"
        else:
            payload = list(zip(*cols, strict=False))
        return [Write(table.name, table.columns, payload, n, False)]

    def rows_with_history(
        self,
        model: type[models.Model],
        values: dict[str, Column],
        n: int,
        *,
        history_ids: Column,
        history_dates: Column,
    ) -> list[Write]:
        """A table's chunk of rows and their simple-history "+" rows. The columns both tables share
        are encoded once; each COPY lists its columns in that shared order."""
        hmodel = history_model(model)
        if hmodel is None:
            raise ValueError(f"{model.__name__} has no history")
        table, htable = self.table(model), self.table(hmodel)
        in_history = set(htable.columns)
        shared = [c for c in table.columns if c in in_history]
        only_main = [c for c in table.columns if c not in in_history]
        extra_values = {
            "history_id": history_ids,
            "history_date": history_dates,
            "history_type": "+",
            "history_change_reason": self.null,
            "history_user_id": self.null,
        }
        only_history = [c for c in htable.columns if c not in set(table.columns)]
        shared_cols = self._columns(table, shared, values, n)
        main_cols = self._columns(table, only_main, values, n)
        hist_cols = [
            self._column(htable, c, extra_values[c], n)
            if c in extra_values
            else repeat(self._constant(htable, c), n)
            for c in only_history
        ]
        if self.vendor == "postgresql":
            lines = list(map("\t".join, zip(*shared_cols, strict=False)))
            main_lines = map("\t".join, zip(lines, *main_cols, strict=False)) if main_cols else lines
            main = "\n".join(main_lines) + "\n"
            hist = "\n".join(map("\t".join, zip(lines, *hist_cols, strict=False))) + "\n"
        else:
            tuples = list(zip(*shared_cols, strict=False))
            main = (
                [a + b for a, b in zip(tuples, zip(*main_cols, strict=False), strict=False)]
                if main_cols
                else tuples
            )
            hist = [a + b for a, b in zip(tuples, zip(*hist_cols, strict=False), strict=False)]
        return [
            Write(table.name, shared + only_main, main, n, False),
            Write(htable.name, shared + only_history, hist, n, True),
        ]

    # --- writing ---------------------------------------------------------------------------
    def submit(self, batch: list[Write]) -> None:
        """Write one chunk of rows (main tables in foreign-key order)."""
        if not self._pipelined:
            self._write(batch)
            return
        self._check()
        if not self._workers:
            connection.ensure_connection()
            self._start("main", connection.connection)
            if self._parallel:
                self._side = connection.get_new_connection(connection.get_connection_params())
                self._side.execute("SET synchronous_commit TO OFF")
                self._start("history", self._side)
        if self._parallel:
            self._workers["main"][0].put([w for w in batch if not w.history])
            self._workers["history"][0].put([w for w in batch if w.history])
        else:
            self._workers["main"][0].put(batch)

    @property
    def parallel(self) -> bool:
        return self._parallel

    def finish(self, *, raise_errors: bool = True) -> None:
        """Wait for the writers; raise what went wrong in them (unless already failing)."""
        for q, thread in self._workers.values():
            q.put(None)
            thread.join()
        self._workers = {}
        if raise_errors:
            self._check()
        self._error = None

    def commit_side(self) -> None:
        """Commit the second connection (after the main transaction committed)."""
        if self._side is not None:
            self._side.commit()
            self._side.close()
            self._side = None

    def rollback_side(self) -> None:
        if self._side is not None:
            self._side.rollback()
            self._side.close()
            self._side = None

    def _check(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError("bulk load failed") from err

    def _start(self, name: str, raw) -> None:
        q: queue.Queue = queue.Queue(maxsize=2)

        def work() -> None:
            while True:
                batch = q.get()
                if batch is None:
                    return
                if self._error is not None:
                    continue
                try:
                    self._copy(raw, batch)
                except BaseException as exc:  # reported in the main thread
                    self._error = exc

        thread = threading.Thread(target=work, name=f"demo-copy-{name}", daemon=True)
        thread.start()
        self._workers[name] = (q, thread)

    def _write(self, batch: list[Write]) -> None:
        if self.vendor == "postgresql":
            connection.ensure_connection()
            self._copy(connection.connection, batch)
            return
        with connection.cursor() as cur:
            for w in batch:
                t0 = time.perf_counter()
                marks = ", ".join(["%s"] * len(w.columns))
                cols = ", ".join(f'"{c}"' for c in w.columns)
                cur.executemany(f'INSERT INTO "{w.table}" ({cols}) VALUES ({marks})', w.payload)
                self._count(w, time.perf_counter() - t0)

    def _copy(self, raw, batch: list[Write]) -> None:
        with raw.cursor() as cur:
            for w in batch:
                t0 = time.perf_counter()
                cols = ", ".join(f'"{c}"' for c in w.columns)
                with cur.copy(f'COPY "{w.table}" ({cols}) FROM STDIN') as cp:
                    cp.write(w.payload)
                self._count(w, time.perf_counter() - t0)

    def _count(self, w: Write, seconds: float) -> None:
        with self._lock:
            self.seconds[w.table] += seconds
            self.rows[w.table] += w.rows
