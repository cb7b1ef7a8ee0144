"""Fast inserts for the bench data sets: ``COPY`` on PostgreSQL, ``executemany`` on SQLite,
in batches."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

BATCH = 10_000


class RowInserter:
    """Insert rows given as ``{attname: value}`` into a model's table, fast.

    PostgreSQL: ``COPY … FROM STDIN``; SQLite: ``executemany``. Django's ``bulk_create``
    spends most of its time preparing each value in Python (profiled: 1M units took
    about ten minutes); this writes the same rows, every column, with the model's own
    defaults for the columns a row leaves out. The database still checks every
    constraint (check, unique, foreign key) on insert.
    """

    def __init__(self, model: Any) -> None:
        from django.db import connection
        from django.utils import timezone

        self.connection = connection
        self.table = model._meta.db_table
        self.fields = list(model._meta.concrete_fields)
        self.columns = [f.column for f in self.fields]
        now = timezone.now()
        sqlite = connection.vendor == "sqlite"
        self.sqlite = sqlite
        # (attname, default) per column; a missing NOT NULL value fails in the database.
        self.pairs = []
        self.converters = []
        for index, f in enumerate(self.fields):
            if getattr(f, "auto_now_add", False) or getattr(f, "auto_now", False):
                default = now
            elif f.has_default():
                default = f.get_default()
            elif f.empty_strings_allowed and f.blank and not f.null:
                default = ""
            else:
                default = None
            self.pairs.append((f.attname, default))
            kind = f.get_internal_type()
            if kind == "JSONField":
                self.converters.append((index, lambda v: json.dumps(v, ensure_ascii=False)))
            elif sqlite and kind == "DateTimeField":
                # Django's SQLite format: naive UTC, 'YYYY-MM-DD HH:MM:SS[.ffffff]'.
                self.converters.append(
                    (index, lambda v: str(v.astimezone(dt.UTC).replace(tzinfo=None)))
                )
            elif sqlite and kind in ("DateField", "DecimalField"):
                self.converters.append((index, str))

    def _tuple(self, row: dict[str, Any]) -> list[Any]:
        values = [row.get(name, default) for name, default in self.pairs]
        for index, convert in self.converters:
            value = values[index]
            if value is not None:
                values[index] = convert(value)
        return values

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        tuples = [self._tuple(r) for r in rows]
        columns = ", ".join(f'"{c}"' for c in self.columns)
        self.connection.ensure_connection()
        if self.sqlite:
            marks = ", ".join("?" * len(self.columns))
            raw = self.connection.connection.cursor()
            raw.executemany(f'INSERT INTO "{self.table}" ({columns}) VALUES ({marks})', tuples)
            raw.close()
            return
        with self.connection.cursor() as cursor:
            copy_sql = f'COPY "{self.table}" ({columns}) FROM STDIN'
            with cursor.cursor.copy(copy_sql) as copy:
                for t in tuples:
                    copy.write_row(t)


def _chunks(n: int, size: int = BATCH) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))
