from __future__ import annotations

from django.db import transaction
from django.db.models import F

from biobank.identifiers import Kind, format_id
from biobank.models import IdSequence


@transaction.atomic
def identifier_allocate(*, kind: Kind) -> str:
    """Allocate the next identifier of a kind.

    The UPDATE takes the counter row's write lock until the transaction ends, so two
    concurrent callers are serialised and can never read the same number (no max()+1).
    """
    updated = IdSequence.objects.filter(prefix=kind.value).update(last_number=F("last_number") + 1)
    if not updated:
        # First use of this prefix: create the row, losing gracefully to a concurrent creator.
        IdSequence.objects.get_or_create(prefix=kind.value, defaults={"last_number": 0})
        IdSequence.objects.filter(prefix=kind.value).update(last_number=F("last_number") + 1)
    number = IdSequence.objects.values_list("last_number", flat=True).get(prefix=kind.value)
    return format_id(kind, number)


@transaction.atomic
def identifiers_allocate(*, kind: Kind, count: int) -> list[str]:
    """Allocate ``count`` consecutive identifiers of a kind with one counter bump."""
    if count < 1:
        return []
    updated = IdSequence.objects.filter(prefix=kind.value).update(
        last_number=F("last_number") + count
    )
    if not updated:
        IdSequence.objects.get_or_create(prefix=kind.value, defaults={"last_number": 0})
        IdSequence.objects.filter(prefix=kind.value).update(last_number=F("last_number") + count)
    last = IdSequence.objects.values_list("last_number", flat=True).get(prefix=kind.value)
    return [format_id(kind, number) for number in range(last - count + 1, last + 1)]
