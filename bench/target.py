"""Where a benchmark database lives and how a process is set up for it: one engine and
one data-set size per ``Target`` (SQLite file under bench/out/, or a PostgreSQL database)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432")
ENGINES = ("sqlite", "postgres")
ENGINE_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


@dataclass(frozen=True)
class Target:
    """One benchmark database: an engine and a data-set size."""

    engine: str
    units: int

    @property
    def db_name(self) -> str:
        # BENCH_DB_PREFIX keeps parallel checkouts on one server apart.
        return f"{os.environ.get('BENCH_DB_PREFIX', 'biobank_bench')}_{self.units}"

    @property
    def sqlite_path(self) -> Path:
        return OUT / f"bench_{self.units}.sqlite3"

    @property
    def url(self) -> str:
        if self.engine == "sqlite":
            return f"sqlite:///{self.sqlite_path}"
        return f"{PG_SERVER}/{self.db_name}"

    @property
    def marker(self) -> Path:
        return OUT / f"{self.engine}_{self.units}.json"

    @property
    def title(self) -> str:
        return f"{ENGINE_NAMES[self.engine]}, {self.units:,} units"

    def _pg_admin(self) -> Any:
        import psycopg

        return psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True)

    def exists(self) -> bool:
        """Built completely (the marker is written last) and the database is still there."""
        if not self.marker.exists():
            return False
        if self.engine == "sqlite":
            return self.sqlite_path.exists()
        with self._pg_admin() as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.db_name,)
            ).fetchone()
        return row is not None

    def info(self) -> dict[str, Any]:
        return json.loads(self.marker.read_text())

    def recreate(self) -> None:
        """Drop and create an empty database (never touches any other database)."""
        OUT.mkdir(parents=True, exist_ok=True)
        self.marker.unlink(missing_ok=True)
        if self.engine == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)
            return
        with self._pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.db_name}"')


def django_setup(target: Target, *, allowed_hosts: str = "127.0.0.1,localhost,testserver") -> None:
    """Configure Django for ``target`` in this process (production mode: DEBUG off)."""
    os.environ["DATABASE_URL"] = target.url
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings_bench"
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production")
    os.environ["ALLOWED_HOSTS"] = allowed_hosts
    # Plain HTTP on loopback: in production the TLS proxy in front redirects to https.
    os.environ["SECURE_SSL_REDIRECT"] = "false"
    import django

    django.setup()
