"""The bench URLconf, with the scan prototype of bench/proposals.py applied for good."""

from bench.proposals import scan_one_query
from bench.urls import urlpatterns

_patch = scan_one_query()
_patch.__enter__()  # patched for the life of this (benchmark) server process

__all__ = ["urlpatterns"]
