"""The HTTP part: gunicorn in production mode on loopback; scan vs. floor latency, load
tests, static files, labels over HTTP and the 96-unit box store in one request."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.measure_store import STORE_UNITS, _store_body, _store_setup, store_route
from bench.target import OUT, REPO, Target
from bench.timing import guarded, ms, percentile, unit_codes

VENV_BIN = Path(sys.executable).parent
SCAN_REQUESTS = 2000  # sequential scan + floor pairs
SCAN_BUDGET_S = 90
LOAD_REQUESTS = 5000
LOAD_BUDGET_S = 20
LOAD_CONNECTIONS = 8
STATIC_REQUESTS = 1000
STATIC_PATH = "/static/admin/css/base.css"
LABEL_HTTP = {"zpl": 400, "png": 100, "svg": 150, "pdf": 60}
LABEL_HTTP_BUDGET_S = 8
STORE_HTTP_RUNS = 7


def store_box_http(base: str, token: str, runs: int = STORE_HTTP_RUNS) -> dict[str, Any]:
    """POST ``runs`` 96-unit boxes, one request each, to the bulk-store endpoint of the
    gunicorn server (median and slowest; the first requests also warm the workers); then
    the same request once more in-process (django.test.Client), only to count its queries."""
    import requests
    from django.db import connection
    from django.test import Client

    times, statuses, stored = [], [], []
    for _ in range(runs):
        box, units, _ = _store_setup(STORE_UNITS)
        url = store_route(box.code)
        if url is None:
            return {"error": "no bulk-store endpoint (containers-store) in the API yet"}
        start = time.perf_counter()
        response = requests.post(
            base + url,
            json=_store_body(box, units),
            headers={"Authorization": f"Token {token}"},
            timeout=120,
        )
        times.append(time.perf_counter() - start)
        statuses.append(response.status_code)
        stored.append(box.placements.open().count())
    box2, units2, _ = _store_setup(STORE_UNITS)
    executed: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        executed.append(sql)
        return execute(sql, params, many, context)

    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    with connection.execute_wrapper(count):
        second = client.post(
            store_route(box2.code), _store_body(box2, units2), content_type="application/json"
        )
    median = statistics.median(times)
    return {
        "mode": f"HTTP POST {url.replace(box.code, '{code}')}, median of {runs} boxes",
        "box": box.code,
        "units": len(units),
        "stored": min(stored),
        "status": max(statuses),
        "runs": runs,
        "ms": ms(median),
        "max_ms": ms(max(times)),
        "all_ms": [ms(t) for t in times],
        "ms_per_unit": round(median * 1000 / len(units), 2),
        "queries": len(executed) if second.status_code == 200 else -1,
    }


# --- HTTP: gunicorn in production mode ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gunicorn(
    target: Target,
    *,
    workers: int = 2,
    conn_max_age: int = 60,
    settings: str = "bench.settings_bench",
) -> Iterator[str]:
    """Serve the project (bench URLconf) with gunicorn, DEBUG off; stopped on exit."""
    import requests

    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "DEBUG": "false",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key-not-for-production"),
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": target.url,
        "CONN_MAX_AGE": str(conn_max_age),
    }
    suffix = "" if settings == "bench.settings_bench" else f"-{settings.rsplit('.', 1)[-1]}"
    log = (OUT / f"gunicorn-{target.engine}-{target.units}{suffix}.log").open("w")
    command = [
        str(VENV_BIN / "gunicorn"),
        "config.wsgi",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}; see {log.name}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/bench/floor/", timeout=2).status_code == 401:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer in 60 s; see {log.name}")
            time.sleep(0.3)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group of the gunicorn we started
                proc.wait(timeout=10)
        log.close()


def _session(token: str) -> Any:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return session


def scan_latency(base: str, token: str, codes: list[str]) -> dict[str, Any]:
    """Sequential, interleaved scan and floor requests (same noise for both)."""
    session = _session(token)
    scan_url, floor_url = f"{base}/api/scan/", f"{base}/bench/floor/"
    for code in codes[:100]:  # warm both workers' connections and caches
        session.post(scan_url, json={"code": code})
        session.post(floor_url, json={"code": code})
    scan, floor, errors = [], [], 0
    deadline = time.monotonic() + SCAN_BUDGET_S
    for code in codes[100 : 100 + SCAN_REQUESTS]:
        start = time.perf_counter()
        r = session.post(scan_url, json={"code": code})
        scan.append(time.perf_counter() - start)
        errors += r.status_code != 200 or r.json().get("code") != code
        start = time.perf_counter()
        r = session.post(floor_url, json={"code": code})
        floor.append(time.perf_counter() - start)
        errors += r.status_code != 200
        if time.monotonic() > deadline:
            break
    return {
        "requests": len(scan),
        "errors": int(errors),
        "scan_p50_ms": percentile(scan, 50),
        "scan_p99_ms": percentile(scan, 99),
        "floor_p50_ms": percentile(floor, 50),
        "floor_p99_ms": percentile(floor, 99),
        "ratio_p99": round(percentile(scan, 99) / percentile(floor, 99), 2),
        "ratio_p50": round(percentile(scan, 50) / percentile(floor, 50), 2),
    }


def load_test(
    base: str,
    token: str,
    request: Callable[[Any, int], bool],
    *,
    total: int = LOAD_REQUESTS,
    budget: float = LOAD_BUDGET_S,
    connections: int = LOAD_CONNECTIONS,
) -> dict[str, Any]:
    """``connections`` threads, each with its own keep-alive session, until ``total``
    requests are sent or ``budget`` seconds pass. ``request(session, i)`` returns ok."""
    lock = threading.Lock()
    counter = iter(range(total))
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + budget

    def worker() -> None:
        session = _session(token)
        while time.monotonic() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                ok = request(session, i)
            except Exception as exc:
                ok = False
                with lock:
                    errors.append(type(exc).__name__)
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)
                if not ok:
                    errors.append("bad response")

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "connections": connections,
        "requests": len(latencies),
        "seconds": round(elapsed, 1),
        "per_s": round(len(latencies) / elapsed, 1),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


def labels_http(base: str, token: str, codes: list[str]) -> list[dict[str, Any]]:
    """One client, sequential GET /api/labels/<code>.<fmt> (database lookup + render)."""
    session = _session(token)
    rows = []
    for fmt, count in LABEL_HTTP.items():
        session.get(f"{base}/api/labels/{codes[0]}.{fmt}")
        done = errors = 0
        start = time.perf_counter()
        for code in codes[1 : count + 1]:
            r = session.get(f"{base}/api/labels/{code}.{fmt}")
            done += 1
            errors += r.status_code != 200 or not r.content
            if time.perf_counter() - start > LABEL_HTTP_BUDGET_S:
                break
        elapsed = time.perf_counter() - start
        rows.append({"format": fmt, "n": done, "per_s": round(done / elapsed), "errors": errors})
    return rows


def http_part(target: Target) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.get(username="bench")
    token, _ = Token.objects.get_or_create(user=user)
    codes = unit_codes(target.units, 100 + SCAN_REQUESTS)
    load_codes = unit_codes(target.units, LOAD_REQUESTS, seed=2)
    result: dict[str, Any] = {"workers": 2, "conn_max_age": 60}
    with gunicorn(target) as base:
        result["latency"] = scan_latency(base, token.key, codes)

        def scan(session: Any, i: int) -> bool:
            code = load_codes[i]
            r = session.post(f"{base}/api/scan/", json={"code": code})
            return r.status_code == 200 and r.json().get("code") == code

        def floor(session: Any, i: int) -> bool:
            return session.post(f"{base}/bench/floor/", json={}).status_code == 200

        def static(session: Any, i: int) -> bool:
            r = session.get(f"{base}{STATIC_PATH}")
            return r.status_code == 200 and len(r.content) > 1000

        result["load_scan"] = load_test(base, token.key, scan)
        result["load_floor"] = load_test(base, token.key, floor)
        result["static"] = load_test(
            base, token.key, static, total=STATIC_REQUESTS, budget=10, connections=4
        )
        probe = _session(token.key).get(f"{base}{STATIC_PATH}")
        result["static"]["headers"] = {
            k: probe.headers.get(k, "") for k in ("Cache-Control", "Content-Type")
        }
        result["labels_http"] = labels_http(base, token.key, unit_codes(target.units, 800, 3))
        result["store"] = guarded(lambda: store_box_http(base, token.key))
    return result
