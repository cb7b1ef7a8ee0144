"""Shared by the bench scripts: milliseconds, percentiles, unit codes, the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile of ``samples`` (seconds) in milliseconds."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ms(ordered[index])


def unit_codes(units: int, count: int, seed: int = 1) -> list[str]:
    from biobank.identifiers import Kind, format_id

    rng = random.Random(seed)
    return [format_id(Kind.UNIT, rng.randint(1, units)) for _ in range(count)]


def guarded(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A figure that failed is reported as an error, not a crash of the whole run."""
    try:
        return measure()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}".strip()[:300]}


# --- machine -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import sqlite3

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "?"
    with contextlib.suppress(OSError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f"{kib / 1024 / 1024:.0f} GiB"
    pg = "?"
    with contextlib.suppress(Exception):
        import psycopg

        from bench.target import PG_SERVER

        with psycopg.connect(f"{PG_SERVER}/postgres") as conn:
            pg = conn.execute("SHOW server_version").fetchone()[0]
    import django
    import gunicorn as gunicorn_pkg

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg,
        "django": django.get_version(),
        "gunicorn": gunicorn_pkg.__version__,
        "os": platform.platform(terse=True),
        "load_average_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
