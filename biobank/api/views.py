"""REST resources: read what the admin shows, and change it only through the same services.

Items are addressed by their barcode ID. State changes are explicit POST actions
(``POST /api/units/<ID>/store/``), generated from the action catalogue
(``biobank/services/actions.py``): its step names are the paths, its permissions the rules.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, Q, QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from biobank.errors import NotFound, ServiceError
from biobank.identifiers import Kind
from biobank.models import (
    Aspirate,
    Container,
    CustodyEvent,
    Dose,
    DoseUnit,
    IdentityCheck,
    Participant,
    Processing,
    ProductUnit,
    StorageUnit,
    Visit,
    action_names,
)
from biobank.selectors.participants import visit_of
from biobank.selectors.scan import scan_resolve
from biobank.selectors.storage import box_contents, units_in, units_locate, units_with_location
from biobank.services import containers as container_services
from biobank.services import dose_plan as dose_plan_services
from biobank.services.actions import action_get, action_run
from biobank.visibility import kind_of_model, policy_for

from . import serializers as s
from .actions import create_method, input_serializer, with_steps
from .fields import PlausibleDateFilter, PlausibleIsoDateTimeFilter
from .permissions import RolePermission


class BaseViewSet(viewsets.GenericViewSet):
    lookup_field = "code"
    lookup_value_regex = "[^/]+"
    permission_classes = [RolePermission]
    model_name = ""

    def get_object(self) -> Any:
        code = str(self.kwargs.get("code", "")).strip().upper()
        obj = self.get_queryset().filter(code=code).first()
        if obj is None:
            raise NotFound(f"No {self.model_name} {code} is registered.", code="not_found")
        return obj

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        """Filters and orderings go through the visibility policy: a blinded user may not
        filter or sort by what is hidden from them (no oracle through a query string)."""
        policy = policy_for(self.request.user)
        if not policy.unblinded:
            filterset = getattr(self, "filterset_class", None)
            declared = filterset.base_filters if filterset is not None else {}
            # (query parameter, what it names, the lookup it runs)
            lookups = [
                (name, name, declared[name].field_name)
                for name in self.request.query_params
                if name in declared
            ]
            # The terms exactly as DRF will sort by them (it trims spaces: " treatment" sorts);
            # only those asked for (the view's own default may break ties by a hidden id).
            asked = "ordering" in self.request.query_params
            ordering = (
                (OrderingFilter().get_ordering(self.request, queryset, self) or []) if asked else []
            )
            lookups += [
                ("ordering", f"ordering by {o}", o.lstrip("-"))
                for o in ordering
                if isinstance(o, str)
            ]
            for parameter, what, lookup in lookups:
                if not policy.lookup_allowed(queryset.model, lookup):
                    raise ServiceError(
                        f"{what} is not available to your role: the trial is blinded.",
                        code="not_visible",
                        field=parameter,
                    )
        return super().filter_queryset(queryset)


# --- participants and visits -----------------------------------------------------------------


class ParticipantFilter(filters.FilterSet):
    site = filters.CharFilter(field_name="site__code")

    class Meta:
        model = Participant
        fields = ["site"]


def _unblinding(view: Any, request: Request, item: Participant, result: Any) -> Response:
    return Response(
        {
            "participant": item.code,
            "arm": result.arm,
            "schedule": [{"visit": v, "treatment": t} for v, t in result.schedule],
            "signature": str(result.record.signature),
        }
    )


@with_steps("participant", unblind=(s.UnblindingOutput, _unblinding))
class ParticipantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "participant"
    serializer_class = s.ParticipantSerializer
    filterset_class = ParticipantFilter
    ordering_fields = ["pseudonym", "code", "enrolled_on"]
    ordering = ["pseudonym"]

    def get_queryset(self) -> QuerySet[Participant]:
        return Participant.objects.select_related("study", "site", "arm")

    create = create_method("participant", "enrol", s.ParticipantSerializer)


class VisitFilter(filters.FilterSet):
    participant = filters.CharFilter(field_name="participant__code")
    visit_type = filters.CharFilter(field_name="visit_type__code")
    scheduled_after = PlausibleDateFilter(field_name="scheduled_on", lookup_expr="gte")
    scheduled_before = PlausibleDateFilter(field_name="scheduled_on", lookup_expr="lte")

    class Meta:
        model = Visit
        fields = ["participant", "visit_type", "scheduled_after", "scheduled_before"]


RECORD_WEIGHT = action_get("visit", "record_weight")
# Visits have no barcode: the step's inputs plus the participant and the visit type.
RecordWeightInput = type(
    "RecordWeightInput",
    (input_serializer("visit", "record_weight"),),
    {
        "participant": serializers.CharField(max_length=80),
        "visit": serializers.CharField(max_length=16, help_text="Visit type code, e.g. M6"),
    },
)


class VisitViewSet(mixins.ListModelMixin, BaseViewSet):
    model_name = "visit"
    serializer_class = s.VisitSerializer
    filterset_class = VisitFilter
    ordering_fields = ["scheduled_on"]
    ordering = ["scheduled_on", "id"]

    def get_queryset(self) -> QuerySet[Visit]:
        return Visit.objects.select_related(
            "participant__study", "visit_type", "weight_recorded_by"
        )

    @extend_schema(
        summary="Record body weight", request=RecordWeightInput, responses=s.VisitSerializer
    )
    @action(detail=False, methods=["post"], url_path="record-weight", url_name="record-weight")
    def record_weight(self, request: Request) -> Response:
        """Record the body weight measured at a treatment visit; answers with the dose plan.
        Visits have no barcode: the body names the participant and the visit type."""
        payload = RecordWeightInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        participant = _scanned(data.pop("participant"), Kind.PARTICIPANT, request, "participant")
        visit = visit_of(participant, data.pop("visit"))
        action_run(action=RECORD_WEIGHT, item=visit, actor=request.user, data=data)
        return Response(self.get_serializer(self.get_queryset().get(pk=visit.pk)).data)

    record_weight.catalogue = RECORD_WEIGHT  # type: ignore[attr-defined]


def _scanned(raw: Any, kind: Kind, request: Request, field: str) -> Any:
    try:
        return scan_resolve(raw=str(raw), viewer=request.user, kinds={kind}).item
    except ServiceError as exc:
        exc.field = field
        raise


# --- aspirates -------------------------------------------------------------------------------


class StatusFilter(filters.FilterSet):
    participant = filters.CharFilter(field_name="participant__code")
    status = filters.CharFilter(field_name="status")


class AspirateFilter(StatusFilter):
    site = filters.CharFilter(field_name="site__code")
    collected_after = PlausibleIsoDateTimeFilter(field_name="collected_at", lookup_expr="gte")

    class Meta:
        model = Aspirate
        fields = ["participant", "status", "site", "collected_after"]


def _processing_started(view: Any, request: Request, item: Any, result: Any) -> Response:
    return Response(s.ProcessingSerializer(result).data, status=201)


@with_steps("aspirate", start_processing=({201: s.ProcessingSerializer}, _processing_started))
class AspirateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "aspirate"
    serializer_class = s.AspirateSerializer
    filterset_class = AspirateFilter
    ordering_fields = ["collected_at", "code"]
    ordering = ["-collected_at"]

    def get_queryset(self) -> QuerySet[Aspirate]:
        return Aspirate.objects.select_related(
            "participant", "site", "visit__visit_type", "received_by"
        )

    create = create_method("aspirate", "collect", s.AspirateSerializer)


# --- processing ------------------------------------------------------------------------------


class ProcessingFilter(StatusFilter):
    class Meta:
        model = Processing
        fields = ["participant", "status"]


def _units_filled(view: Any, request: Request, item: Any, result: Any) -> Response:
    units = units_with_location(
        ProductUnit.objects.filter(pk__in=[u.pk for u in result])
    ).select_related("participant", "aspirate", "processing", "freezing_run")
    return Response(s.UnitSerializer(units, many=True).data, status=201)


@with_steps("processing", fill_units=({201: s.UnitSerializer(many=True)}, _units_filled))
class ProcessingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "processing"
    serializer_class = s.ProcessingSerializer
    filterset_class = ProcessingFilter
    ordering_fields = ["started_at", "code"]
    ordering = ["-started_at"]

    def get_queryset(self) -> QuerySet[Processing]:
        return Processing.objects.select_related(
            "aspirate", "participant__study", "qc_release__signature"
        ).prefetch_related("passages", "qc_results")


# --- units -----------------------------------------------------------------------------------


class UnitFilter(StatusFilter):
    processing = filters.CharFilter(field_name="processing__code")
    container_type = filters.CharFilter(field_name="container_type")
    container = filters.CharFilter(method="in_container")

    class Meta:
        model = ProductUnit
        fields = ["participant", "status", "processing", "container_type", "container"]

    def in_container(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return units_in(queryset, container_code=value.strip().upper())


@with_steps("unit")
class UnitViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "productunit"
    serializer_class = s.UnitSerializer
    filterset_class = UnitFilter
    ordering_fields = ["code", "created_at", "status"]
    ordering = ["code"]

    def get_queryset(self) -> QuerySet[ProductUnit]:
        units = ProductUnit.objects.select_related(
            "participant__study", "aspirate", "processing", "freezing_run"
        )
        # A list is counted without the placement join (it never changes the count: one open
        # placement at most) and its page located in one query; one unit gets the join.
        return units if self.action == "list" else units_with_location(units)

    def paginate_queryset(self, queryset: QuerySet[ProductUnit]) -> list[ProductUnit] | None:
        page = super().paginate_queryset(queryset)
        return None if page is None else units_locate(list(page))


# --- storage ---------------------------------------------------------------------------------


class StorageUnitViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "storageunit"
    serializer_class = s.StorageUnitSerializer
    filterset_fields = ["kind", "active"]
    ordering = ["code"]

    def get_queryset(self) -> QuerySet[StorageUnit]:
        return StorageUnit.objects.select_related("site")

    @extend_schema(
        parameters=[
            OpenApiParameter("container_type", str, enum=["cryobag", "cryovial"], required=False)
        ],
        responses=s.SuggestionSerializer,
    )
    @action(detail=True, methods=["get"])
    def suggest(self, request: Request, code: str) -> Response:
        """The free position the system suggests (the user may choose another)."""
        container_type = request.query_params.get("container_type") or None
        if container_type not in (None, "cryobag", "cryovial"):
            raise ServiceError(
                "container_type must be cryobag or cryovial.", field="container_type"
            )
        found = container_services.free_position_suggest(
            storage_unit=self.get_object(), container_type=container_type
        )
        return Response(
            {
                "container": found.box.code,
                "path": found.box.path,
                "position": found.position,
                "reason": found.reason,
            }
        )


class ContainerFilter(filters.FilterSet):
    storage_unit = filters.CharFilter(field_name="storage_unit__code")
    parent = filters.CharFilter(field_name="parent__code")
    kind = filters.CharFilter(field_name="kind")

    class Meta:
        model = Container
        fields = ["storage_unit", "parent", "kind", "active"]


def _positions(box: Container) -> list[dict[str, Any]]:
    """Every position of a box with the unit in it; for a container without positions, its
    units."""
    held = box_contents(box=box)
    if not box.is_box:
        return [
            {"position": "", "row": 0, "column": 0, "unit": code, "checked_out": out}
            for units in held.values()
            for code, out in units
        ]
    box_type = box.box_type
    cells = []
    for row, column in box_type.positions():
        code, out = (held.get((row, column)) or [(None, False)])[0]
        cells.append(
            {
                "position": box_type.position_label(row, column),
                "row": row,
                "column": column,
                "unit": code,
                "checked_out": out,
            }
        )
    return cells


def _stored(view: Any, request: Request, item: Container, result: Any) -> Response:
    return Response(_positions(item))


@with_steps("container", store=(s.PositionSerializer(many=True), _stored))
class ContainerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "container"
    serializer_class = s.ContainerSerializer
    filterset_class = ContainerFilter
    ordering_fields = ["path", "code"]
    ordering = ["path"]

    def get_queryset(self) -> QuerySet[Container]:
        return Container.objects.select_related("storage_unit", "parent", "box_type")

    @extend_schema(responses=s.PositionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def positions(self, request: Request, code: str) -> Response:
        """Every position of a box with the unit in it (null when free)."""
        box = self.get_object()
        if not box.is_box:
            raise ServiceError(
                f"{box.code} is a {box.kind} without positions.", code="no_positions", field="code"
            )
        return Response(_positions(box))


# --- events and doses ------------------------------------------------------------------------


class EventFilter(filters.FilterSet):
    participant = filters.CharFilter(field_name="participant__code")
    item = filters.CharFilter(field_name="item_code")
    item_kind = filters.CharFilter(field_name="item_kind")
    action = filters.CharFilter(field_name="action", method="by_action")
    after = PlausibleIsoDateTimeFilter(field_name="at", lookup_expr="gte")

    class Meta:
        model = CustodyEvent
        fields = ["participant", "item", "item_kind", "action", "after"]

    def by_action(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # Events written before a step was renamed count as that step.
        return queryset.filter(action__in=action_names(value.strip()))


class RecordViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Read-only records without a barcode, addressed by their number."""

    lookup_field = "pk"
    lookup_value_regex = "[0-9]+"
    record_name = ""

    def get_object(self) -> Any:
        # The same answer for every number when the numbers would show where hidden rows are.
        queryset = self.get_queryset()
        numbered = policy_for(self.request.user).addresses_by_number(kind_of_model(queryset.model))
        obj = queryset.filter(pk=self.kwargs.get("pk")).first() if numbered else None
        if obj is None:
            raise NotFound(f"No such {self.record_name}.", code="not_found")
        return obj


class EventViewSet(RecordViewSet):
    """The chain-of-custody log (read-only). Blinded users see only aspirate and dose steps."""

    model_name = "custodyevent"
    record_name = "event"
    serializer_class = s.EventSerializer
    filterset_class = EventFilter
    ordering = ["at", "id"]

    def get_queryset(self) -> QuerySet[CustodyEvent]:
        qs = CustodyEvent.objects.select_related("participant", "actor", "site")
        return policy_for(self.request.user).rows(qs)


class DoseFilter(StatusFilter):
    visit = filters.CharFilter(field_name="visit__visit_type__code")

    class Meta:
        model = Dose
        fields = ["participant", "status", "visit"]


@with_steps("dose")
class DoseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "dose"
    serializer_class = s.DoseSerializer
    filterset_class = DoseFilter
    ordering = ["code"]

    def get_queryset(self) -> QuerySet[Dose]:
        return Dose.objects.select_related(
            "participant__study",
            "visit__visit_type",
            "processing",
            "release_signature",
            "deviation_signature",
        ).prefetch_related(Prefetch("dose_units", queryset=DoseUnit.objects.select_related("unit")))

    create = create_method("dose", "prepare", s.DoseSerializer)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "days", int, required=False, description="Look-ahead, 1–365 (default 30)"
            )
        ],
        responses=s.DueSerializer(many=True),
    )
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def due(self, request: Request) -> Response:
        """Treatment visits coming up and what to prepare (identity columns for unblinded)."""
        days = dose_plan_services.due_days_parse(request.query_params.get("days"))
        hidden = policy_for(request.user).hidden_fields("dose")
        rows = []
        for row in dose_plan_services.doses_due(within_days=days):
            item = {
                "participant": row.visit.participant.code,
                "pseudonym": row.visit.participant.pseudonym,
                "visit": row.visit.visit_type.code,
                "scheduled_on": row.visit.scheduled_on,
                "dose": row.dose.code if row.dose else None,
                "dose_status": row.dose.status if row.dose else None,
                "treatment": row.treatment,
                "units": [u.code for u in row.units],
                "todo": row.todo,
            }
            rows.append({k: v for k, v in item.items() if k not in hidden})
        return Response(rows)  # plain dicts: concealed keys are absent, not null


class IdentityCheckFilter(filters.FilterSet):
    dose = filters.CharFilter(field_name="dose__code")
    participant = filters.CharFilter(method="for_participant")
    matched = filters.BooleanFilter(field_name="matched")
    stage = filters.CharFilter(field_name="stage")

    class Meta:
        model = IdentityCheck
        fields = ["dose", "participant", "matched", "stage"]

    def for_participant(
        self, queryset: QuerySet[IdentityCheck], name: str, value: str
    ) -> QuerySet[IdentityCheck]:
        # The dose's participant, or the participant scanned against it (a mismatch).
        code = value.strip().upper()
        return queryset.filter(Q(expected_participant=code) | Q(participant_scan__iexact=code))


class IdentityCheckViewSet(RecordViewSet):
    """Every chain-of-identity check, matched or not (read-only)."""

    model_name = "identitycheck"
    record_name = "identity check"
    serializer_class = s.IdentityCheckSerializer
    filterset_class = IdentityCheckFilter
    ordering = ["checked_at", "id"]

    def get_queryset(self) -> QuerySet[IdentityCheck]:
        return IdentityCheck.objects.select_related("dose", "checked_by")
