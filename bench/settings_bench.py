"""Bench-only settings: the project's settings plus a URLconf with a minimal DRF endpoint.

Everything else (DEBUG, SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, CONN_MAX_AGE) comes from
the environment exactly as in production; collected static files go under bench/out/.
"""

from config.settings import *  # noqa: F403
from config.settings import BASE_DIR

ROOT_URLCONF = "bench.urls"
STATIC_ROOT = BASE_DIR / "bench" / "out" / "staticfiles"
