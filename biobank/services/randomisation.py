"""The randomisation list: import it (administrators), and take its next entry at enrolment.

Once a study has a list, nobody chooses an arm: ``participant_enroll`` takes the next unused
entry of the participant's stratum under a lock on the study row, so two enrolments at the
same moment never take the same entry.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import Arm, Participant, RandomisationEntry, Site, Study
from biobank.numbers import ascii_int

MAX_ROWS = 10_000
# The columns' sizes in the database (RandomisationEntry: positive integers, a 32-character
# stratum): a file beyond them is refused with the line, not failed in the driver.
MAX_NUMBER = 2_147_483_647
STRATUM_LENGTH = RandomisationEntry._meta.get_field("stratum").max_length or 32
ARM_LENGTH = Arm._meta.get_field("code").max_length or 8


@dataclass(frozen=True)
class ListRow:
    sequence: int
    arm: str
    stratum: str
    block: int | None


def _whole(value: str, where: str, name: str) -> int:
    number = ascii_int(value)
    if number is None:
        raise ServiceError(
            f"{where}: {name} must be a whole number, not {value.strip()[:20]!r}.",
            code="invalid",
            field="file",
        )
    if number < 1:
        raise ServiceError(f"{where}: {name} must be 1 or more.", code="invalid", field="file")
    if number > MAX_NUMBER:
        raise ServiceError(
            f"{where}: {name} must be at most {MAX_NUMBER}.", code="invalid", field="file"
        )
    return number


def _text(value: str, where: str, name: str, length: int) -> str:
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ServiceError(
            f"{where}: {name} holds a control character.", code="invalid", field="file"
        )
    if len(value) > length:
        raise ServiceError(
            f"{where}: {name} is longer than {length} characters.", code="invalid", field="file"
        )
    return value


def randomisation_csv_parse(*, text: str) -> list[ListRow]:
    """Rows of a list file: columns ``sequence`` and ``arm``, optionally ``stratum`` and
    ``block``; a header row; comma or semicolon separated; a BOM is tolerated."""
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise ServiceError("The file is empty.", code="empty", field="file")
    delimiter = ";" if text.splitlines()[0].count(";") > text.splitlines()[0].count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = {c.strip().lower() for c in (reader.fieldnames or [])}
    missing = {"sequence", "arm"} - columns
    if missing:
        raise ServiceError(
            f"The header must name the columns sequence and arm (missing: "
            f"{', '.join(sorted(missing))}).",
            code="bad_header",
            field="file",
        )
    rows: list[ListRow] = []
    seen: set[int] = set()
    for number, raw in enumerate(reader, start=2):
        record = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        if not any(record.values()):
            continue
        where = f"Line {number}"
        sequence = _whole(record.get("sequence", ""), where, "sequence")
        if sequence in seen:
            raise ServiceError(
                f"{where}: sequence {sequence} appears twice.", code="duplicate", field="file"
            )
        seen.add(sequence)
        arm = _text(record.get("arm", "").upper(), where, "arm", ARM_LENGTH)
        if not arm:
            raise ServiceError(f"{where}: the arm is empty.", code="required", field="file")
        block = record.get("block", "")
        rows.append(
            ListRow(
                sequence=sequence,
                arm=arm,
                stratum=_text(record.get("stratum", "").upper(), where, "stratum", STRATUM_LENGTH),
                block=_whole(block, where, "block") if block else None,
            )
        )
        if len(rows) > MAX_ROWS:
            raise ServiceError(
                f"A list has at most {MAX_ROWS} rows.", code="too_long", field="file"
            )
    if not rows:
        raise ServiceError("The file has a header but no rows.", code="empty", field="file")
    return rows


@transaction.atomic
def randomisation_list_import(*, study: Study, text: str, actor: AbstractBaseUser) -> int:
    """Import (or, before any entry is used, replace) the study's randomisation list."""
    Study.objects.select_for_update().get(pk=study.pk)
    active = RandomisationEntry.objects.filter(study=study, superseded_at__isnull=True)
    used = active.filter(participant__isnull=False).count()
    if used:
        raise ServiceError(
            f"The list of {study.code} is in use ({used} entries taken): it can no longer be "
            "replaced.",
            code="list_in_use",
            field="file",
        )
    rows = randomisation_csv_parse(text=text)
    arms = {a.code: a for a in study.arms.all()}
    unknown = sorted({r.arm for r in rows} - set(arms))
    if unknown:
        raise ServiceError(
            f"Unknown arm(s) {', '.join(unknown)}: {study.code} has arms "
            f"{', '.join(sorted(arms))}.",
            code="unknown_arm",
            field="file",
        )
    strata = {r.stratum for r in rows}
    if "" in strata and len(strata) > 1:
        raise ServiceError(
            "Either every row names a stratum or none does.", code="mixed_strata", field="file"
        )
    now = timezone.now()
    active.update(superseded_at=now)
    RandomisationEntry.objects.bulk_create(
        RandomisationEntry(
            study=study,
            sequence=r.sequence,
            stratum=r.stratum,
            block=r.block,
            arm=arms[r.arm],
            imported_at=now,
            imported_by=actor,
        )
        for r in rows
    )
    return len(rows)


def randomisation_in_use(*, study: Study) -> bool:
    """Does the study allocate from a list (so that no arm may be typed)?"""
    return RandomisationEntry.objects.filter(study=study, superseded_at__isnull=True).exists()


def randomisation_entry_next(*, study: Study, site: Site) -> RandomisationEntry:
    """The next unused entry of the site's stratum, for an enrolment in progress (call inside
    its transaction, then ``randomisation_entry_use``). The study row is locked first, so
    concurrent enrolments queue here and never take the same entry."""
    Study.objects.select_for_update().get(pk=study.pk)
    active = RandomisationEntry.objects.filter(study=study, superseded_at__isnull=True)
    stratified = active.exclude(stratum="").exists()
    stratum = site.code if stratified else ""
    entry = (
        active.filter(stratum=stratum, participant__isnull=True)
        .select_related("arm")
        .order_by("sequence")
        .first()
    )
    if entry is None:
        where = f" for stratum {stratum}" if stratum else ""
        raise ServiceError(
            f"The randomisation list has no unused entry{where}: import a longer list.",
            code="list_exhausted",
            field="site",
        )
    return entry


def randomisation_entry_use(*, entry: RandomisationEntry, participant: Participant) -> None:
    entry.participant = participant
    entry.used_at = timezone.now()
    entry.save(update_fields=["participant", "used_at"])
