"""The participant chain report: everything recorded for one participant, as the policy
lets the reader see it, with a content hash over the canonical JSON."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Prefetch
from django.utils import timezone

from biobank import visibility
from biobank.models import (
    Dose,
    DoseStatus,
    Participant,
    Placement,
    ProductUnit,
    QcRelease,
    Signature,
    SignatureMeaning,
    Treatment,
    Unblinding,
    Visit,
    action_names,
)
from biobank.selectors.audit_export import event_extra_columns, iso, plain
from biobank.selectors.participants import events_seen
from biobank.terms import BLINDED_PRODUCT

# Steps that depart from the normal path; listed again under "Deviations" in the report.
DEVIATION_ACTIONS = action_names(
    "quarantine",
    "reject",
    "discard",
    "cancel",
    "fail",
    "remove",
    "return_to_stock",
    "lift_quarantine",
    "emergency_unblinding",
)


def content_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a report's content (the cover is not part of it)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Further report sections (e.g. shipments, issue 16): each gets (participant, user) and returns
# (title, rows) or None; rows are flat dicts. Register with ``report_sections.append(fn)``.
ReportSection = Callable[[Participant, Any], tuple[str, list[dict[str, Any]]] | None]
report_sections: list[ReportSection] = []


@dataclass
class ParticipantReport:
    body: dict[str, Any]
    generated_at: dt.datetime
    requested_by: str
    blinded: bool
    content_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.content_hash = content_hash(self.body)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cover": {
                "title": "Participant chain report",
                "generated_at": iso(self.generated_at),
                "requested_by": self.requested_by,
                "blinded": self.blinded,
                "content_hash": self.content_hash,
                "hash_algorithm": "SHA-256 of the canonical JSON of 'content'",
            },
            "content": self.body,
        }


def _user_name(user: Any) -> str:
    if user is None:
        return ""
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return f"{full} ({user.get_username()})" if full else user.get_username()


def _signature(sig: Signature | None) -> dict[str, Any] | None:
    if sig is None:
        return None
    return {
        "signer": sig.signer_name,
        "signed_at": iso(sig.signed_at),
        "meaning": sig.get_meaning_display(),
        "record": sig.record,
    }


def _placements(unit: ProductUnit) -> list[dict[str, Any]]:
    return [
        {
            "storage_unit": p.container.storage_unit.code,
            "container": p.container.code,
            "path": p.container.path,
            "position": p.position,
            "placed_at": iso(p.placed_at),
            "checked_out_at": iso(p.checked_out_at),
            "ended_at": iso(p.ended_at),
            "end_reason": p.end_reason,
        }
        for p in sorted(unit.placements.all(), key=lambda p: (p.placed_at, p.pk))
    ]


def participant_report(*, participant: Participant, user: Any) -> ParticipantReport:
    """Everything recorded for one participant, as the policy lets this user see it."""
    blinded = not visibility.can_see_allocation(user)
    show = {
        k: visibility.may_see_kind(user, k) for k in ("unit", "processing", "freezing_run", "dose")
    }
    p = participant
    body: dict[str, Any] = {
        "participant": {
            "code": p.code,
            "pseudonym": p.pseudonym,
            "study": p.study.code,
            "site": p.site.code,
            "enrolled_on": iso(p.enrolled_on),
            "weight_kg": plain(p.weight_kg),
        }
    }
    if not blinded and p.arm_id:
        body["participant"]["arm"] = f"{p.arm.code} – {p.arm.name}"
    visits = list(
        Visit.objects.filter(participant=p)
        .select_related("visit_type", "aspirate", "aspirate__site")
        .order_by("visit_type__order")
    )
    body["visits"] = [
        {
            "visit": v.visit_type.code,
            "name": v.visit_type.name,
            "scheduled_on": iso(v.scheduled_on),
            "done_on": iso(v.done_on),
        }
        for v in visits
    ]
    aspirates = [v.aspirate for v in visits if hasattr(v, "aspirate")]
    for a in aspirates:  # shown as the policy says, never saved
        visibility.policy_for(user).show_item("aspirate", a)
    body["aspirates"] = [
        {
            "code": a.code,
            "visit": a.visit.visit_type.code,
            "status": a.get_status_display(),
            "collected_at": iso(a.collected_at),
            "collected_by": a.collected_by,
            "site": a.site.code,
            "volume_ml": plain(a.volume_ml),
            "anticoagulant": a.get_anticoagulant_display(),
            "received_at": iso(a.received_at),
            "transport_temperature_c": plain(a.transport_temperature_c),
            "condition": a.get_condition_display() if a.condition else "",
            "status_reason": a.status_reason,
        }
        for a in aspirates
    ]
    signatures: list[tuple[str, Signature]] = []
    if show["processing"]:
        processings = list(
            p.processings.select_related("aspirate").prefetch_related(
                "passages", "qc_results", "freezing_runs"
            )
        )
        releases = {
            r.processing_id: r
            for r in QcRelease.objects.filter(processing__participant=p).select_related("signature")
        }
        body["processing"] = []
        for pr in sorted(processings, key=lambda x: x.started_at):
            release = releases.get(pr.pk)
            if release:
                signatures.append(("processing", release.signature))
            body["processing"].append(
                {
                    "code": pr.code,
                    "aspirate": pr.aspirate.code,
                    "status": pr.get_status_display(),
                    "started_at": iso(pr.started_at),
                    "harvested_at": iso(pr.harvested_at),
                    "harvest_passage": pr.harvest_passage,
                    "harvest_cell_count": pr.harvest_cell_count,
                    "harvest_viability_pct": plain(pr.harvest_viability_pct),
                    "status_reason": pr.status_reason,
                    "passages": [
                        {
                            "number": ps.number,
                            "at": iso(ps.passaged_at),
                            "cell_count": ps.cell_count,
                            "viability_pct": plain(ps.viability_pct),
                        }
                        for ps in pr.passages.all()
                    ],
                    "qc": [
                        {
                            "test": q.get_test_display(),
                            "result": q.result,
                            "passed": q.passed,
                            "tested_at": iso(q.tested_at),
                        }
                        for q in sorted(pr.qc_results.all(), key=lambda q: (q.tested_at, q.pk))
                    ],
                    "qc_release": _signature(release.signature) if release else None,
                    "freezing_runs": [
                        {
                            "code": fr.code,
                            "program": fr.program,
                            "started_at": iso(fr.started_at),
                            "finished_at": iso(fr.finished_at),
                        }
                        for fr in pr.freezing_runs.all()
                    ]
                    if show["freezing_run"]
                    else [],
                }
            )
    if show["unit"]:
        units = (
            ProductUnit.objects.filter(participant=p)
            .select_related("processing", "freezing_run")
            .prefetch_related(
                Prefetch(
                    "placements",
                    queryset=Placement.objects.select_related("container__storage_unit"),
                ),
            )
            .order_by("code")
        )
        body["units"] = [
            {
                "code": u.code,
                "processing": u.processing.code,
                "container_type": u.get_container_type_display(),
                "cell_number": u.cell_number,
                "volume_ml": plain(u.volume_ml),
                "freezing_run": u.freezing_run.code if u.freezing_run else "",
                "status": u.get_status_display(),
                "status_reason": u.status_reason,
                "storage_history": _placements(u),
            }
            for u in units
        ]
    doses = list(
        Dose.objects.filter(participant=p)
        .select_related(
            "visit__visit_type", "processing", "release_signature", "deviation_signature"
        )
        .prefetch_related("identity_checks", "dose_units__unit")
        .order_by("prepared_at", "code")
    )
    body["doses"] = []
    for d in doses:
        if d.release_signature:
            signatures.append(("dose", d.release_signature))
        row: dict[str, Any] = {
            "code": d.code,
            "visit": d.visit.visit_type.code,
            "product": BLINDED_PRODUCT if blinded else Treatment(d.treatment).label,
            # The label of a planned dose reads "unit reserved or saline planned": fine for all.
            "status": DoseStatus(d.status).label,
            "route": d.route,
            "volume_ml": plain(d.volume_ml),
            "prepared_at": iso(d.prepared_at),
            "ready_at": iso(d.ready_at),
            "expires_at": iso(d.expires_at),
            "dispatched_at": iso(d.dispatched_at),
            "administered_at": iso(d.administered_at),
            "administered_by": d.administered_by,
            "release": _signature(d.release_signature),
            "identity_checks": [
                {
                    "stage": c.get_stage_display(),
                    "checked_at": iso(c.checked_at),
                    "dose_scan": c.dose_scan,
                    "participant_scan": c.participant_scan,
                    "matched": c.matched,
                    "message": c.message,
                }
                for c in sorted(d.identity_checks.all(), key=lambda c: (c.checked_at, c.pk))
            ],
        }
        if not blinded:
            row["status_reason"] = d.status_reason
            # A dose may draw on several units (issue 13): their codes, in order.
            row["unit"] = ", ".join(link.unit.code for link in d.dose_units.all())
            row["processing"] = d.processing.code if d.processing_id else ""
            row["saline_lot"] = d.saline_lot
            row["viable_cells"] = d.viable_cells
            if d.deviation_signature:
                signatures.append(("dose", d.deviation_signature))
                row["deviation"] = {
                    "reason": d.deviation_reason,
                    "signature": _signature(d.deviation_signature),
                }
            row["post_thaw_cell_count"] = d.post_thaw_cell_count
            row["post_thaw_viability_pct"] = plain(d.post_thaw_viability_pct)
        body["doses"].append(row)
    unblindings = list(
        Unblinding.objects.filter(participant=p)
        .select_related("signature")
        .order_by("signature__signed_at")
    )
    for u in unblindings:
        signatures.append(("participant", u.signature))
    body["unblindings"] = [
        {"reason": u.reason, "signature": _signature(u.signature)} for u in unblindings
    ]
    # QA's signed quarantine lifts: each names the aspirate or unit it released.
    kinds = {a.code: "aspirate" for a in aspirates}
    kinds.update({u["code"]: "unit" for u in body.get("units", [])})
    for sig in Signature.objects.filter(
        meaning=SignatureMeaning.QUARANTINE_LIFT, record__in=list(kinds)
    ):
        signatures.append((kinds[sig.record], sig))
    body["signatures"] = [
        _signature(sig)
        for kind, sig in sorted(signatures, key=lambda ks: (ks[1].signed_at, ks[1].pk))
        if visibility.may_see_kind(user, kind)
    ]
    events = events_seen(user=user, participant=p)
    # A blinded reader gets no event id and no hash-chain value: gaps in the ids, and which
    # row a hash links to, would show hidden lab steps (an MSC dose's units, written just
    # before it). "n", the event's number in this report, is the row key for everyone.
    numbered = visibility.policy_for(user).addresses_by_number("custody_event")
    chain = event_extra_columns() if numbered else []
    body["events"] = [
        {
            "n": n,
            **({"id": e.id} if numbered else {}),
            "at": iso(e.at),
            "item_kind": e.item_kind,
            "item_code": e.item_code,
            "action": e.action,
            "from_status": e.from_status,
            "to_status": e.to_status,
            "user": e.actor.get_username(),
            "site": e.site.code if e.site else "",
            "location": e.location,
            "reason": e.reason,
            "data": e.data,
            **{c: plain(getattr(e, c)) for c in chain},
        }
        for n, e in enumerate(events, start=1)
    ]
    body["deviations"] = [
        {
            "at": e["at"],
            "item_code": e["item_code"],
            "what": e["action"],
            "reason": e["reason"],
        }
        for e in body["events"]
        if e["action"] in DEVIATION_ACTIONS
    ] + [
        {
            "at": c["checked_at"],
            "item_code": d["code"],
            "what": f"identity MISMATCH ({c['stage']})",
            "reason": c["message"],
        }
        for d in body["doses"]
        for c in d["identity_checks"]
        if not c["matched"]
    ]
    extra = {}
    for section in report_sections:
        result = section(p, user)
        if result is not None:
            extra[result[0]] = result[1]
    if extra:
        body["sections"] = extra
    return ParticipantReport(
        body=body,
        generated_at=timezone.now(),
        requested_by=_user_name(user),
        blinded=blinded,
    )
