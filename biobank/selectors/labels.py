"""From a scanned or typed identifier to the item it names and what its label shows.

Lookups are by kind (the identifier's prefix), one query per kind however many codes are
asked for. A label needs the view permission of its item's model (``label_permission``),
checked before any lookup. The label text comes from ``biobank.labels.content``, which
takes plain values only: nothing here passes an arm or a treatment on, so no label can
show them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Model, QuerySet
from django.utils import timezone

from biobank.errors import Forbidden, NotFound, ServiceError
from biobank.identifiers import Kind, ParsedId
from biobank.labels import TEMPLATES, LabelContent, LabelTemplate
from biobank.labels import content as build
from biobank.models import (
    Aspirate,
    Container,
    ContainerType,
    Dose,
    DoseStatus,
    FreezingRun,
    Participant,
    Processing,
    ProductUnit,
    StorageUnit,
)
from biobank.scan_input import ScanError, parse_scan
from biobank.terms import local_minute
from biobank.visibility import kind_of_identifier, policy_for

# Stock lower than this (the 38×13 mm cryovial label) gets the short form of the text.
SMALL_LABEL_HEIGHT_MM = 20


def is_small(template: LabelTemplate) -> bool:
    return template.height_mm < SMALL_LABEL_HEIGHT_MM


@dataclass(frozen=True)
class LabelSubject:
    """An item that gets a label: its identifier, the item and its default stock."""

    code: str
    kind: Kind
    item: Model
    template: str

    def content_for(self, template: LabelTemplate | None = None) -> LabelContent:
        """The label text on ``template`` (default: the item's own stock)."""
        chosen = template if template is not None else TEMPLATES[self.template]
        return _SOURCES[self.kind].content(self.item, is_small(chosen))

    @property
    def content(self) -> LabelContent:
        return self.content_for()


def _local(value: Any) -> Any:
    return timezone.localtime(value) if timezone.is_aware(value) else value


def _whose(item: Any) -> dict[str, Any]:
    """What a participant's sample label starts with: its ID, the pseudonym and the study."""
    return {
        "code": item.code,
        "pseudonym": item.participant.pseudonym,
        "study_code": item.participant.study.code,
    }


def _participant(p: Participant, small: bool) -> LabelContent:
    return build.participant_label_content(
        code=p.code, pseudonym=p.pseudonym, study_code=p.study.code
    )


def _aspirate(a: Aspirate, small: bool) -> LabelContent:
    return build.aspirate_label_content(
        **_whose(a),
        visit_name=a.visit.visit_type.name,
        collected_at=_local(a.collected_at),
        collected_by=a.collected_by,
        small=small,
    )


def _unit(u: ProductUnit, small: bool) -> LabelContent:
    return build.unit_label_content(
        **_whose(u),
        visit_name=u.aspirate.visit.visit_type.name,
        collected_on=_local(u.aspirate.collected_at),
        cell_number=u.cell_number,
        volume_ml=u.volume_ml,
        cryoprotectant=u.cryoprotectant,
        expires_at=_local(u.expires_at()),
        small=small,
    )


def _processing(p: Processing, small: bool) -> LabelContent:
    return build.processing_label_content(
        **_whose(p),
        aspirate_code=p.aspirate.code,
        started_at=_local(p.started_at),
    )


def _freezing_run(r: FreezingRun, small: bool) -> LabelContent:
    return build.freezing_run_label_content(
        code=r.code,
        pseudonym=r.processing.participant.pseudonym,
        processing_code=r.processing.code,
        started_at=_local(r.started_at),
    )


def _container(c: Container, small: bool) -> LabelContent:
    return build.container_label_content(
        code=c.code,
        name=c.name,
        kind=c.get_kind_display(),
        path=c.path,
        box_type=c.box_type.name if c.box_type_id else "",
    )


def _storage_unit(s: StorageUnit, small: bool) -> LabelContent:
    return build.storage_unit_label_content(
        code=s.code,
        name=s.name,
        kind=s.get_kind_display(),
        site=s.site.name,
        min_c=s.min_temperature_c,
        max_c=s.max_temperature_c,
    )


class LabelUnprintable(ServiceError):
    status_code = 422


def dose_printable_check(d: Dose, *, where: str = "", field: str = "code") -> None:
    """A dose label is printed only for a dose still to be given: not before it is made
    ready (no expiry yet), nor once it is cancelled, administered or expired (the model's
    expiry rule). Status and expiry only, so MSC and saline doses answer alike."""
    refusal = ""
    if d.status == DoseStatus.CANCELLED:
        refusal = f"{d.code} is cancelled: a cancelled dose gets no label."
    elif d.status == DoseStatus.ADMINISTERED:
        refusal = f"{d.code} was administered: its label is not printed again."
    elif d.expires_at is None:
        raise LabelUnprintable(
            f"{where}{d.code} has no expiry yet: its label is printed when the dose is thawed "
            "or prepared.",
            code="dose_not_ready",
            field=field,
        )
    elif d.is_expired(timezone.now()):
        refusal = (
            f"{d.code} expired at {local_minute(d.expires_at)}: an expired dose must not be "
            "labelled for use."
        )
    if refusal:
        raise LabelUnprintable(f"{where}{refusal}", code="dose_not_printable", field=field)


def _dose(d: Dose, small: bool) -> LabelContent:
    # Same inputs for MSC and saline: the treatment is never passed (see dose_label_content).
    dose_printable_check(d)
    assert d.expires_at is not None  # checked above
    return build.dose_label_content(
        study_code=d.participant.study.code,
        participant_pseudonym=d.participant.pseudonym,
        visit_name=d.visit.visit_type.name,
        dose_id=d.code,
        volume_ml=d.volume_ml,
        route=d.route,
        expires_at=_local(d.expires_at),
        emergency_contact=d.participant.study.emergency_contact,
    )


@dataclass(frozen=True)
class _Source:
    model: type[Model]
    related: tuple[str, ...]
    content: Callable[[Any, bool], LabelContent]  # (item, small stock?)

    def queryset(self) -> QuerySet[Any]:
        return self.model._default_manager.select_related(*self.related)


_SOURCES: dict[Kind, _Source] = {
    Kind.PARTICIPANT: _Source(Participant, ("study",), _participant),
    Kind.ASPIRATE: _Source(Aspirate, ("participant__study", "visit__visit_type"), _aspirate),
    Kind.PROCESSING: _Source(Processing, ("participant__study", "aspirate"), _processing),
    Kind.FREEZING_RUN: _Source(FreezingRun, ("processing__participant",), _freezing_run),
    Kind.UNIT: _Source(ProductUnit, ("participant__study", "aspirate__visit__visit_type"), _unit),
    Kind.STORAGE_UNIT: _Source(StorageUnit, ("site",), _storage_unit),
    Kind.CONTAINER: _Source(Container, ("box_type",), _container),
    Kind.BOX: _Source(Container, ("box_type",), _container),
    Kind.DOSE: _Source(Dose, ("participant__study", "visit__visit_type"), _dose),
}
LABELLED_KINDS: tuple[Kind, ...] = tuple(_SOURCES)


def label_permission(kind: Kind) -> str:
    """The permission a label of ``kind`` needs: the view permission of its model, as for
    the item itself in the admin and the API (roles that print labels hold it)."""
    meta = _SOURCES[kind].model._meta
    return f"{meta.app_label}.view_{meta.model_name}"


LABEL_PERMISSIONS: tuple[str, ...] = tuple(dict.fromkeys(map(label_permission, _SOURCES)))


def may_label_any(user: Any) -> bool:
    """May ``user`` have any label at all? Asked before a code is even read."""
    return bool(user and user.is_authenticated and any(user.has_perm(p) for p in LABEL_PERMISSIONS))


def _printable_check(item: Model, where: str, field: str) -> None:
    if isinstance(item, Dose):
        dose_printable_check(item, where=where, field=field)


def default_template_for(item: Model) -> str:
    """The label stock an item is printed on unless another is asked for. No queries."""
    if isinstance(item, ProductUnit):
        return "cryovial" if item.container_type == ContainerType.CRYOVIAL else "cryobag"
    if isinstance(item, Participant):
        return "participant"
    if isinstance(item, Container):
        return "box"
    if isinstance(item, StorageUnit):
        return "storage_unit"
    if isinstance(item, Dose):
        return "dose"
    # Aspirate tube/bag; culture vessels and freezing-run sheets use the same stock.
    return "aspirate"


def label_content_for(item: Model, template: LabelTemplate | None = None) -> LabelContent:
    """The label text of one item (a Participant, Aspirate, ProductUnit, ...) on
    ``template`` (default: its own stock)."""
    chosen = template if template is not None else TEMPLATES[default_template_for(item)]
    for source in _SOURCES.values():
        if isinstance(item, source.model):
            return source.content(item, is_small(chosen))
    raise ServiceError(f"{type(item).__name__} has no label.", code="no_label")


def _parse(raw: object, where: str, field: str, viewer: Any) -> ParsedId:
    """``where`` prefixes messages ("Code 2 of 5: "), empty for a single code."""
    if not isinstance(raw, str):
        raise ServiceError(f"{where}The identifier must be text.", code="invalid", field=field)
    try:
        # What a scanner adds (]C0, ¨C0, *...*, a URL) is cleaned or explained as the scan
        # endpoint does it, with its codes and messages (a long paste is never echoed).
        parsed = parse_scan(raw).parsed
    except ScanError as exc:
        raise ServiceError(f"{where}{exc.message}", code=exc.code, field=field) from exc
    try:
        # Before any lookup: a label the viewer may not have is refused alike whether the
        # item exists or not.
        policy_for(viewer).require_label(kind_of_identifier(parsed.kind))
    except ServiceError as exc:
        exc.field = field
        raise
    if parsed.kind in _SOURCES and not viewer.has_perm(label_permission(parsed.kind)):
        raise Forbidden(
            f"{where}You are not authorised to see {parsed.kind.label} labels.",
            code="permission_denied",
            field=field,
        )
    if parsed.kind not in _SOURCES:
        raise NotFound(
            f"{where}{parsed.value} is a {parsed.kind.label} identifier; there is no "
            f"{parsed.kind.label} label to look up here.",
            code="not_found",
            field=field,
        )
    return parsed


def label_subjects_get(
    *, codes: Sequence[object], viewer: Any, field: str = "codes"
) -> list[LabelSubject]:
    """The items named by ``codes``, in the given order (repeats allowed).

    Raises ``ServiceError`` (400) for a code that is not an identifier (as the scan
    endpoint explains it), 403 for a kind the viewer may not have labels of (before any
    lookup), ``NotFound`` (404) for one that names nothing and ``LabelUnprintable`` (422)
    for a dose whose label may not be printed; the message gives the code and its position.
    """
    parsed = [
        _parse(raw, f"Code {i + 1} of {len(codes)}: ", f"{field}.{i}", viewer)
        for i, raw in enumerate(codes)
    ]
    by_kind: dict[Kind, set[str]] = {}
    for p in parsed:
        by_kind.setdefault(p.kind, set()).add(p.value)
    found: dict[str, Model] = {}
    for kind, values in by_kind.items():
        for item in _SOURCES[kind].queryset().filter(code__in=values):
            found[item.code] = item
    subjects = []
    for i, p in enumerate(parsed):
        item = found.get(p.value)
        if item is None:
            raise NotFound(
                f"Code {i + 1} of {len(parsed)}: no {p.kind.label} {p.value} is registered.",
                code="not_found",
                field=f"{field}.{i}",
            )
        _printable_check(item, f"Code {i + 1} of {len(parsed)}: ", f"{field}.{i}")
        subjects.append(
            LabelSubject(
                code=p.value,
                kind=p.kind,
                item=item,
                template=default_template_for(item),
            )
        )
    return subjects


def label_subject_get(*, code: object, viewer: Any) -> LabelSubject:
    """One item by its identifier; errors as ``label_subjects_get`` but without a position."""
    parsed = _parse(code, "", "code", viewer)
    item = _SOURCES[parsed.kind].queryset().filter(code=parsed.value).first()
    if item is None:
        raise NotFound(
            f"No {parsed.kind.label} {parsed.value} is registered.", code="not_found", field="code"
        )
    _printable_check(item, "", "code")
    return LabelSubject(
        code=parsed.value,
        kind=parsed.kind,
        item=item,
        template=default_template_for(item),
    )
