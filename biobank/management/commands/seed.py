from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from biobank.services.errors import ServiceError
from biobank.services.seeding import demo_data_load, trial_definition_load

SEEDS = Path(settings.BASE_DIR) / "seeds"
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-biobank"


class Command(BaseCommand):
    help = "Load the trial definition (seeds/trial.json) and optionally the demo data set."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--demo", action="store_true", help="also load seeds/demo.json")
        parser.add_argument(
            "--demo-user",
            action="store_true",
            help=f"create the demo login {DEMO_USERNAME} / {DEMO_PASSWORD} (superuser)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic():
                trial = trial_definition_load(data=_read("trial.json"))
                self.stdout.write(f"trial definition: {trial['created_or_changed']} rows changed")
                user = _demo_user() if options["demo"] or options["demo_user"] else None
                if options["demo"]:
                    counts = demo_data_load(data=_read("demo.json"), actor=user)
                    self.stdout.write(
                        f"demo data: {counts['participants']} participants and "
                        f"{counts['aspirates']} aspirates added"
                    )
        except ServiceError as exc:
            raise CommandError(f"seed refused: {exc.message}") from exc
        if user is not None:
            self.stdout.write(f"demo login: {DEMO_USERNAME} / {DEMO_PASSWORD}")


def _read(name: str) -> dict[str, Any]:
    path = SEEDS / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc


def _demo_user() -> Any:
    User = get_user_model()
    user = User.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user = User.objects.create_superuser(DEMO_USERNAME, "demo@example.org", DEMO_PASSWORD)
    return user
