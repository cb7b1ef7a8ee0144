"""Bench settings with the prototypes of bench/proposals.py patched in (scan only).

Used by ``bench/proposals.py`` to serve the proposed code with gunicorn next to the
current code; never used by ``bench/run``.
"""

from bench.settings_bench import *  # noqa: F403

ROOT_URLCONF = "bench.urls_proposals"
