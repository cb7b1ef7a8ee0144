from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from biobank.errors import ServiceError
from biobank.models import Study
from biobank.services.randomisation import randomisation_in_use, randomisation_list_import
from biobank.services.roles import ADMINISTRATOR, CLINICIAN, LAB, MONITOR, QA, roles_sync
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
                roles = roles_sync()
                self.stdout.write(f"roles: {', '.join(roles)}")
                trial = trial_definition_load(data=_read("trial.json"))
                self.stdout.write(f"trial definition: {trial['created_or_changed']} rows changed")
                user = _demo_user() if options["demo"] or options["demo_user"] else None
                if options["demo"]:
                    study = Study.objects.get(code=_read("trial.json")["study"]["code"])
                    if not randomisation_in_use(study=study):
                        listed = randomisation_list_import(
                            study=study, text=_read_text("randomisation.csv"), actor=user
                        )
                        self.stdout.write(f"demo randomisation list: {listed} entries")
                    counts = demo_data_load(
                        data=_read("demo.json"), actor=user, password=DEMO_PASSWORD
                    )
                    self.stdout.write(
                        f"demo data: {counts['participants']} participants and "
                        f"{counts['aspirates']} aspirates added"
                    )
        except ServiceError as exc:
            raise CommandError(f"seed refused: {exc.message}") from exc
        if user is not None:
            self.stdout.write(f"demo login: {DEMO_USERNAME} / {DEMO_PASSWORD} (superuser)")
            for username, role in _role_users():
                self.stdout.write(f"  {username} / {DEMO_PASSWORD} ({role})")


def _read_text(name: str) -> str:
    path = SEEDS / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc


def _read(name: str) -> dict[str, Any]:
    path = SEEDS / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc


ROLE_USERS = [
    ("lab", LAB, "Lena", "Lab"),
    ("qa", QA, "Quentin", "Quality"),
    ("clinician", CLINICIAN, "Clara", "Clinician"),
    ("monitor", MONITOR, "Mona", "Monitor"),
    ("trialadmin", ADMINISTRATOR, "Adam", "Admin"),
]


def _demo_user() -> Any:
    from django.contrib.auth.models import Group

    User = get_user_model()
    user = User.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user = User.objects.create_superuser(DEMO_USERNAME, "demo@example.org", DEMO_PASSWORD)
    for username, role, first, last in ROLE_USERS:
        if not User.objects.filter(username=username).exists():
            member = User.objects.create_user(
                username,
                f"{username}@example.org",
                DEMO_PASSWORD,
                is_staff=True,
                first_name=first,
                last_name=last,
            )
            member.groups.add(Group.objects.get(name=role))
    return user


def _role_users() -> list[tuple[str, str]]:
    return [(username, role) for username, role, _, _ in ROLE_USERS]
