"""Check the custody-event hash chain end to end; exit 1 naming the first broken link."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from biobank.services.audit import audit_chain_verify


class Command(BaseCommand):
    help = "Verify the hash chain of the custody-event log; exits non-zero at the first break."

    def handle(self, *args: Any, **options: Any) -> None:
        start = time.perf_counter()
        report = audit_chain_verify()
        seconds = time.perf_counter() - start
        if not report.ok:
            raise CommandError(
                f"audit chain BROKEN after {report.checked} good events: {report.problem}",
                returncode=1,
            )
        self.stdout.write(
            f"audit chain OK: {report.checked} events in {seconds:.1f} s; "
            f"head hash {report.head_hash}"
        )
