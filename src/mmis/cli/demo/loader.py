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

from django.db import connection, models

Column = Sequence[str | None] | str | None


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

    def __init__(self, *, pipelined: bool = True) -> None:
        self.vendor = connection.vendor
        self.tables: dict[type[models.Model], Table] = {}
        self.rows: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._pipelined = pipelined and self.vendor == "postgresql"
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
    def prepare(self, model: type[models.Model], values: dict[str, Column], n: int) -> tuple[Table, list]:
        table = self.table(model)
        cols = []
        for column in table.columns:
            if column in values:
                cols.append(self._column(table, column, values[column], n))
            else:
                cols.append(repeat(self._constant(table, column), n))
        return table, cols

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

    def prepare_history(
        self,
        model: type[models.Model],
        values: dict[str, Column],
        n: int,
        *,
        history_ids: Column,
        history_dates: Column,
    ) -> tuple[Table, list]:
        hmodel = history_model(model)
        if hmodel is None:
            raise ValueError(f"{model.__name__} has no history")
        extra = {
            "history_id": history_ids,
            "history_date": history_dates,
            "history_type": repeat("+", n),
            "history_change_reason": repeat(self.null, n),
            "history_user_id": repeat(self.null, n),
        }
        table = self.table(hmodel)
        cols = []
        for column in table.columns:
            if column in extra:
                cols.append(extra[column])
            elif column in values:
                cols.append(self._column(table, column, values[column], n))
            else:
                cols.append(repeat(self._constant(table, column), n))
        return table, cols

    def encode(self, table: Table, cols: list) -> bytes | list:
        """The payload of one write: COPY text on PostgreSQL, parameter rows on SQLite."""
        if self.vendor == "postgresql":
            return ("\n".join(map("\t".join, zip(*cols, strict=False))) + "\n").encode()
        return list(zip(*cols, strict=False))

    def submit(self, batch: list[tuple[Table, bytes | list, int]]) -> None:
        """Write one chunk: a list of (table, payload, row count), in foreign-key order."""
        if self._pipelined:
            if self._thread is None:
                self._start()
            self._check()
            self._queue.put(batch)
        else:
            self._write(batch)

    def finish(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._check()

    def _check(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError("bulk load failed") from err

    def _start(self) -> None:
        connection.ensure_connection()
        raw = connection.connection
        self._queue = queue.Queue(maxsize=2)

        def work() -> None:
            while True:
                batch = self._queue.get()
                if batch is None:
                    return
                if self._error is not None:
                    continue
                try:
                    self._copy(raw, batch)
                except BaseException as exc:  # reported in the main thread
                    self._error = exc

        self._thread = threading.Thread(target=work, name="demo-copy", daemon=True)
        self._thread.start()

    def _write(self, batch) -> None:
        if self.vendor == "postgresql":
            connection.ensure_connection()
            self._copy(connection.connection, batch)
            return
        with connection.cursor() as cur:
            for table, payload, n in batch:
                t0 = time.perf_counter()
                marks = ", ".join(["%s"] * len(table.columns))
                cols = ", ".join(f'"{c}"' for c in table.columns)
                cur.executemany(f'INSERT INTO "{table.name}" ({cols}) VALUES ({marks})', payload)
                self.seconds[table.name] += time.perf_counter() - t0
                self.rows[table.name] += n

    def _copy(self, raw, batch) -> None:
        with raw.cursor() as cur:
            for table, payload, n in batch:
                t0 = time.perf_counter()
                cols = ", ".join(f'"{c}"' for c in table.columns)
                with cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as cp:
                    cp.write(payload)
                self.seconds[table.name] += time.perf_counter() - t0
                self.rows[table.name] += n
