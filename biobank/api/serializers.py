"""Read serializers (items addressed by barcode ID) and the input serializers of actions.

Every model serializer answers through the visibility policy (``biobank.visibility``): the
fields it hides for the user (arm, MSC/saline, the unit behind a dose, post-thaw figures)
are absent from the output, statuses and event data are shown as the policy says, and free
text is redacted of lab-only identifiers for blinded users.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from biobank.models import (
    Aspirate,
    Container,
    CustodyEvent,
    Dose,
    DosePlan,
    DoseUnit,
    IdentityCheck,
    Participant,
    Passage,
    Processing,
    ProductUnit,
    QcResult,
    StorageUnit,
    Visit,
    millions,
)
from biobank.visibility import Policy, kind_of_model, policy_for


def code_field(**kwargs: Any) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="code", read_only=True, **kwargs)


def signature_field() -> serializers.CharField:
    """An optional e-signature, as it reads: who signed, when, and what it means."""
    return serializers.CharField(read_only=True, allow_null=True)


# Text typed or scanned by people: a lab code in it is redacted for blinded users.
_FREE_TEXT = ("status_reason", "reason", "location", "message", "dose_scan", "participant_scan")


def request_policy(context: dict[str, Any]) -> Policy:
    request = context.get("request")
    return policy_for(getattr(request, "user", None))


class PolicySerializer(serializers.ModelSerializer):
    """A model serializer whose output the visibility policy filters, field by field."""

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        policy = request_policy(self.context)
        if policy.unblinded:
            return data
        kind = kind_of_model(self.Meta.model)
        for name in policy.hidden_fields(kind):
            data.pop(name, None)
        if isinstance(data.get("status"), str):
            status = data["status"]
            if "status_reason" in data:
                data["status_reason"] = policy.status_reason_of(kind, status, data["status_reason"])
            data["status"] = policy.status_of(kind, status)
        for name in _FREE_TEXT:
            if isinstance(data.get(name), str):
                data[name] = policy.redact(data[name])
        return data


class ParticipantSerializer(PolicySerializer):
    study = code_field()
    site = code_field()
    arm = code_field(allow_null=True)

    class Meta:
        model = Participant
        fields = ["code", "pseudonym", "study", "site", "arm", "enrolled_on", "weight_kg"]


def plan_output(plan: DosePlan | None) -> dict[str, Any] | None:
    """The dose plan in cells and as a person reads it (×10⁶). The same for MSC and saline."""
    if plan is None:
        return None
    return {
        "weight_kg": str(plan.weight_kg),
        "target_cells": plan.target_cells,
        "window_min_cells": plan.min_cells,
        "window_max_cells": plan.max_window_cells,
        "target": millions(plan.target_cells),
        "window": f"{millions(plan.min_cells)}–{millions(plan.max_window_cells)}",
        "summary": plan.summary(),
    }


class PlanSerializer(serializers.Serializer):
    weight_kg = serializers.CharField()
    target_cells = serializers.IntegerField()
    window_min_cells = serializers.IntegerField()
    window_max_cells = serializers.IntegerField()
    target = serializers.CharField(help_text="Target viable cells, ×10⁶")
    window = serializers.CharField(help_text="Accepted viable cells, ×10⁶")
    summary = serializers.CharField()


class VisitSerializer(PolicySerializer):
    participant = code_field()
    visit_type = code_field()
    weight_recorded_by = serializers.CharField(
        source="weight_recorded_by.username", read_only=True, allow_null=True
    )
    dose_plan = serializers.SerializerMethodField()

    class Meta:
        model = Visit
        fields = [
            "id",
            "participant",
            "visit_type",
            "scheduled_on",
            "done_on",
            "weight_kg",
            "weight_measured_at",
            "weight_recorded_by",
            "dose_plan",
        ]

    @extend_schema_field(PlanSerializer(allow_null=True))
    def get_dose_plan(self, obj: Visit) -> dict[str, Any] | None:
        return plan_output(obj.dose_plan())


class AspirateSerializer(PolicySerializer):
    participant = code_field()
    site = code_field()
    visit = serializers.CharField(source="visit.visit_type.code", read_only=True)
    received_by = serializers.CharField(
        source="received_by.username", read_only=True, allow_null=True
    )

    class Meta:
        model = Aspirate
        fields = ["code", *Aspirate.RECORD_FIELDS]


class PassageSerializer(PolicySerializer):
    class Meta:
        model = Passage
        fields = ["number", "passaged_at", "cell_count", "viability_pct"]


class QcResultSerializer(PolicySerializer):
    class Meta:
        model = QcResult
        fields = ["test", "result", "value", "passed", "tested_at"]


class ProcessingSerializer(PolicySerializer):
    aspirate = code_field()
    participant = code_field()
    passages = PassageSerializer(many=True, read_only=True)
    qc_results = QcResultSerializer(many=True, read_only=True)
    qc_release = serializers.SerializerMethodField()
    # Until when the harvest may be dosed fresh (null before the harvest): Processing's rule.
    fresh_expires_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = Processing
        fields = [
            "code",
            *Processing.RECORD_FIELDS,
            "fresh_expires_at",
            "passages",
            "qc_results",
            "qc_release",
        ]

    def get_qc_release(self, obj: Processing) -> str | None:
        release = getattr(obj, "qc_release", None)
        return str(release.signature) if release else None


class LocationSerializer(serializers.Serializer):
    container = serializers.CharField()
    path = serializers.CharField()
    position = serializers.CharField(allow_blank=True)
    checked_out = serializers.BooleanField()


class UnitSerializer(PolicySerializer):
    participant = code_field()
    aspirate = code_field()
    processing = code_field()
    freezing_run = code_field(allow_null=True)
    location = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField(read_only=True)  # ProductUnit's shelf-life rule
    expired = serializers.SerializerMethodField()

    class Meta:
        model = ProductUnit
        fields = ["code", *ProductUnit.RECORD_FIELDS, "expires_at", "expired", "location"]

    def get_expired(self, obj: ProductUnit) -> bool:
        return obj.is_expired(timezone.now())

    @extend_schema_field(LocationSerializer(allow_null=True))
    def get_location(self, obj: ProductUnit) -> dict[str, Any] | None:
        code = getattr(obj, "location_code", None)
        if not code:
            return None
        return {
            "container": code,
            "path": obj.location_path,
            "position": obj.location_position or "",
            "checked_out": obj.location_checked_out is not None,
        }


class StorageUnitSerializer(PolicySerializer):
    site = code_field()

    class Meta:
        model = StorageUnit
        fields = [
            "code",
            "site",
            "name",
            "kind",
            "min_temperature_c",
            "max_temperature_c",
            "active",
        ]


class ContainerSerializer(PolicySerializer):
    storage_unit = code_field()
    parent = code_field(allow_null=True)
    box_type = serializers.CharField(source="box_type.name", read_only=True, allow_null=True)
    rows = serializers.IntegerField(source="box_type.rows", read_only=True, allow_null=True)
    columns = serializers.IntegerField(source="box_type.columns", read_only=True, allow_null=True)

    class Meta:
        model = Container
        fields = [
            "code",
            "name",
            "kind",
            "path",
            "storage_unit",
            "parent",
            "box_type",
            "rows",
            "columns",
            "active",
        ]


class PositionSerializer(serializers.Serializer):
    position = serializers.CharField()
    row = serializers.IntegerField()
    column = serializers.IntegerField()
    unit = serializers.CharField(allow_null=True)
    checked_out = serializers.BooleanField()


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": True,
        "description": "Step details, keys per action (e.g. container, position).",
    }
)
class EventDataField(serializers.JSONField):
    pass


class EventSerializer(PolicySerializer):
    participant = code_field()
    actor = serializers.CharField(source="actor.username", read_only=True)
    site = code_field(allow_null=True)
    data = EventDataField(read_only=True)

    class Meta:
        model = CustodyEvent
        fields = [
            "id",
            "item_code",
            "item_kind",
            "participant",
            "action",
            "from_status",
            "to_status",
            "actor",
            "at",
            "recorded_at",
            "site",
            "location",
            "reason",
            "data",
        ]

    def to_representation(self, instance: CustodyEvent) -> dict[str, Any]:
        # The event as the policy shows it (statuses, data, reason, redaction), as on every page.
        return super().to_representation(request_policy(self.context).event_shown(instance))


class DoseUnitSerializer(serializers.ModelSerializer):
    unit = code_field()
    viable_cells = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = DoseUnit
        fields = ["unit", "post_thaw_cell_count", "post_thaw_viability_pct", "viable_cells"]


class DoseSerializer(PolicySerializer):
    participant = code_field()
    visit = serializers.CharField(source="visit.visit_type.code", read_only=True)
    units = serializers.SerializerMethodField()
    processing = code_field(allow_null=True)
    plan = serializers.SerializerMethodField()
    release_signature = signature_field()
    deviation = serializers.SerializerMethodField()
    expired = serializers.SerializerMethodField()

    class Meta:
        model = Dose
        fields = [
            "code",
            "participant",
            "visit",
            "status",
            "status_reason",
            "route",
            "volume_ml",
            "plan",
            "treatment",
            "units",
            "processing",
            "prepared_at",
            "release_signature",
            "deviation",
            "ready_at",
            "post_thaw_cell_count",
            "post_thaw_viability_pct",
            "viable_cells",
            "saline_lot",
            "expires_at",
            "expired",
            "dispatched_at",
            "administered_at",
            "administered_by",
        ]

    @extend_schema_field(DoseUnitSerializer(many=True))
    def get_units(self, obj: Dose) -> list[dict[str, Any]]:
        return DoseUnitSerializer(obj.dose_units.all(), many=True).data

    @extend_schema_field(PlanSerializer(allow_null=True))
    def get_plan(self, obj: Dose) -> dict[str, Any] | None:
        if obj.target_cells is None or obj.weight_kg is None:
            return None
        return plan_output(obj.participant.study.dose_plan(obj.weight_kg))

    def get_deviation(self, obj: Dose) -> str | None:
        if obj.deviation_signature_id is None:
            return None
        return f"{obj.deviation_reason} ({obj.deviation_signature})"

    def get_expired(self, obj: Dose) -> bool:
        return obj.is_expired(timezone.now())


class IdentityCheckSerializer(PolicySerializer):
    dose = code_field(allow_null=True)
    checked_by = serializers.CharField(source="checked_by.username", read_only=True)

    class Meta:
        model = IdentityCheck
        fields = [
            "id",
            "dose",
            "stage",
            "dose_scan",
            "participant_scan",
            "expected_participant",
            "matched",
            "message",
            "checked_by",
            "checked_at",
        ]


class ScheduleEntrySerializer(serializers.Serializer):
    visit = serializers.CharField()
    treatment = serializers.CharField()


class UnblindingOutput(serializers.Serializer):
    participant = serializers.CharField()
    arm = serializers.CharField()
    schedule = ScheduleEntrySerializer(many=True)
    signature = serializers.CharField()


class SuggestionSerializer(serializers.Serializer):
    container = serializers.CharField()
    path = serializers.CharField()
    position = serializers.CharField(allow_blank=True)
    reason = serializers.CharField()


class DueSerializer(serializers.Serializer):
    participant = serializers.CharField()
    pseudonym = serializers.CharField()
    visit = serializers.CharField()
    scheduled_on = serializers.DateField()
    dose = serializers.CharField(allow_null=True)
    dose_status = serializers.CharField(allow_null=True)
    treatment = serializers.CharField(required=False)
    units = serializers.ListField(child=serializers.CharField(), required=False)
    todo = serializers.CharField(required=False)
