"""REST resources: read what the admin shows, and change it only through the same services.

Items are addressed by their barcode ID. State changes are explicit POST actions
(``POST /api/units/<ID>/store/``); each names the permission it needs (``write_permissions``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import Model, Prefetch, Q, QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
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
    Placement,
    Processing,
    ProductUnit,
    Site,
    StorageUnit,
    Visit,
)
from biobank.scanning.resolve import scan_resolve
from biobank.selectors_storage import units_with_location
from biobank.services import aspirates as aspirate_services
from biobank.services import doses as dose_services
from biobank.services import processing as processing_services
from biobank.services import release as release_services
from biobank.services import storage as storage_services
from biobank.services import units as unit_services
from biobank.services.trial import participant_enroll
from biobank.visibility import can_see_allocation, policy_for

from . import serializers as s
from .permissions import RolePermission


def resolve(raw: Any, kinds: set[Kind], field: str, *, viewer: Any) -> Any:
    """An item from an ID given in a request body, as tolerant as a scan, with the field named;
    kinds the viewer may not see are refused by the scan resolver's visibility check."""
    try:
        return scan_resolve(raw=str(raw or ""), viewer=viewer, kinds=kinds).item
    except ServiceError as exc:
        exc.field = field
        raise


def visit_of(raw_participant: Any, visit_code: str, *, viewer: Any) -> Visit:
    """A participant's visit from a participant ID and a visit type code (BASELINE, M6...)."""
    participant = resolve(raw_participant, {Kind.PARTICIPANT}, "participant", viewer=viewer)
    visit = participant.visits.filter(visit_type__code=visit_code.strip().upper()).first()
    if visit is None:
        raise ServiceError(f"{participant.pseudonym} has no visit {visit_code}.", field="visit")
    return visit


class BaseViewSet(viewsets.GenericViewSet):
    lookup_field = "code"
    lookup_value_regex = "[^/]+"
    permission_classes = [RolePermission]
    model_name = ""
    write_permissions: dict[str, str] = {}

    def get_object(self) -> Any:
        code = str(self.kwargs.get("code", "")).strip().upper()
        obj = self.get_queryset().filter(code=code).first()
        if obj is None:
            raise NotFound(f"No {self.model_name} {code} is registered.", code="not_found")
        return obj

    def run(
        self,
        request: Request,
        input_class: type[serializers.Serializer] | None,
        call: Callable[[dict[str, Any]], Any],
        status: int = 200,
    ) -> Response:
        data: dict[str, Any] = {}
        if input_class is not None:
            payload = input_class(data=request.data)
            payload.is_valid(raise_exception=True)
            data = dict(payload.validated_data)
        result = call(data)
        if isinstance(result, Response):
            return result
        return Response(self.get_serializer(self._reload(result)).data, status=status)

    def _reload(self, obj: Model) -> Model:
        return self.get_queryset().get(pk=obj.pk)

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        """Filters and orderings go through the visibility policy: a blinded user may not
        filter or sort by what is hidden from them (no oracle through a query string)."""
        policy = policy_for(self.request.user)
        if not policy.unblinded:
            filterset = getattr(self, "filterset_class", None)
            declared = filterset.base_filters if filterset is not None else {}
            lookups = [
                (name, declared[name].field_name)
                for name in self.request.query_params
                if name in declared
            ]
            ordering = self.request.query_params.get("ordering", "")
            lookups += [(o, o.lstrip("-")) for o in ordering.split(",") if o.strip()]
            for name, lookup in lookups:
                if not policy.lookup_allowed(queryset.model, lookup):
                    raise ServiceError(
                        f"{name} is not available to your role: the trial is blinded.",
                        code="not_visible",
                        field=name,
                    )
        return super().filter_queryset(queryset)


# --- participants and visits -----------------------------------------------------------------


class ParticipantFilter(filters.FilterSet):
    site = filters.CharFilter(field_name="site__code")

    class Meta:
        model = Participant
        fields = ["site"]


class ParticipantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "participant"
    serializer_class = s.ParticipantSerializer
    filterset_class = ParticipantFilter
    ordering_fields = ["pseudonym", "code", "enrolled_on"]
    ordering = ["pseudonym"]
    write_permissions = {
        "create": "biobank.add_participant",
        "unblind": "biobank.emergency_unblind",
    }

    def get_queryset(self) -> QuerySet[Participant]:
        return Participant.objects.select_related("study", "site", "arm")

    @extend_schema(request=s.EnrolInput, responses={201: s.ParticipantSerializer})
    def create(self, request: Request) -> Response:
        def call(d: dict[str, Any]) -> Participant:
            site = (
                Site.objects.filter(code=d["site"].strip().upper()).select_related("study").first()
            )
            if site is None:
                raise ServiceError(f"No site {d['site']}.", field="site")
            arm = None
            if d.get("arm"):
                if not can_see_allocation(request.user):
                    raise ServiceError(
                        "Only unblinded roles may record an allocation.",
                        code="permission_denied",
                        field="arm",
                    )
                arm = site.study.arms.filter(code=d["arm"].strip().upper()).first()
                if arm is None:
                    raise ServiceError(f"No arm {d['arm']}.", field="arm")
            return participant_enroll(
                study=site.study,
                site=site,
                pseudonym=d["pseudonym"],
                enrolled_on=d["enrolled_on"],
                arm=arm,
                weight_kg=d.get("weight_kg"),
                actor=request.user,
            )

        return self.run(request, s.EnrolInput, call, status=201)

    @extend_schema(request=s.UnblindInput, responses={200: s.UnblindingOutput})
    @action(detail=True, methods=["post"])
    def unblind(self, request: Request, code: str) -> Response:
        participant = self.get_object()

        def call(d: dict[str, Any]) -> Response:
            result = release_services.participant_unblind(
                participant=participant,
                actor=request.user,
                password=d["password"],
                reason=d["reason"],
            )
            return Response(
                {
                    "participant": participant.code,
                    "arm": result.arm,
                    "schedule": [{"visit": v, "treatment": t} for v, t in result.schedule],
                    "signature": str(result.record.signature),
                }
            )

        return self.run(request, s.UnblindInput, call)


class VisitFilter(filters.FilterSet):
    participant = filters.CharFilter(field_name="participant__code")
    visit_type = filters.CharFilter(field_name="visit_type__code")
    scheduled_after = filters.DateFilter(field_name="scheduled_on", lookup_expr="gte")
    scheduled_before = filters.DateFilter(field_name="scheduled_on", lookup_expr="lte")

    class Meta:
        model = Visit
        fields = ["participant", "visit_type", "scheduled_after", "scheduled_before"]


class VisitViewSet(mixins.ListModelMixin, BaseViewSet):
    model_name = "visit"
    serializer_class = s.VisitSerializer
    filterset_class = VisitFilter
    ordering_fields = ["scheduled_on"]
    ordering = ["scheduled_on", "id"]
    write_permissions = {"weight": "biobank.record_weight"}

    def get_queryset(self) -> QuerySet[Visit]:
        return Visit.objects.select_related(
            "participant__study", "visit_type", "weight_recorded_by"
        )

    @extend_schema(request=s.WeightInput, responses=s.VisitSerializer)
    @action(detail=False, methods=["post"])
    def weight(self, request: Request) -> Response:
        """Record the body weight measured at a treatment visit; answers with the dose plan."""
        return self.run(
            request,
            s.WeightInput,
            lambda d: dose_services.visit_weight_record(
                visit=visit_of(d["participant"], d["visit"], viewer=request.user),
                weight_kg=d["weight_kg"],
                measured_at=d["measured_at"],
                actor=request.user,
            ),
        )


# --- aspirates -------------------------------------------------------------------------------


class StatusFilter(filters.FilterSet):
    participant = filters.CharFilter(field_name="participant__code")
    status = filters.CharFilter(field_name="status")


class AspirateFilter(StatusFilter):
    site = filters.CharFilter(field_name="site__code")
    collected_after = filters.IsoDateTimeFilter(field_name="collected_at", lookup_expr="gte")

    class Meta:
        model = Aspirate
        fields = ["participant", "status", "site", "collected_after"]


class AspirateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "aspirate"
    serializer_class = s.AspirateSerializer
    filterset_class = AspirateFilter
    ordering_fields = ["collected_at", "code"]
    ordering = ["-collected_at"]
    write_permissions = {
        "create": "biobank.add_aspirate",
        "start_processing": "biobank.add_processing",
    }

    def get_queryset(self) -> QuerySet[Aspirate]:
        return Aspirate.objects.select_related(
            "participant", "site", "visit__visit_type", "received_by"
        )

    @extend_schema(request=s.CollectInput, responses={201: s.AspirateSerializer})
    def create(self, request: Request) -> Response:
        def call(d: dict[str, Any]) -> Aspirate:
            visit = visit_of(d["participant"], d["visit"], viewer=request.user)
            return aspirate_services.aspirate_collect(
                visit=visit,
                volume_ml=d["volume_ml"],
                anticoagulant=d["anticoagulant"],
                collected_at=d["collected_at"],
                collected_by=d["collected_by"],
                actor=request.user,
            )

        return self.run(request, s.CollectInput, call, status=201)

    @extend_schema(request=s.ReceiveInput, responses=s.AspirateSerializer)
    @action(detail=True, methods=["post"])
    def receive(self, request: Request, code: str) -> Response:
        item = self.get_object()
        return self.run(
            request,
            s.ReceiveInput,
            lambda d: aspirate_services.aspirate_receive(
                aspirate=item,
                decision=d["decision"],
                actor=request.user,
                temperature_c=d["temperature_c"],
                condition=d["condition"],
                received_at=d["received_at"],
                reason=d["reason"],
            ),
        )

    @extend_schema(request=s.ReasonInput, responses=s.AspirateSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, code: str) -> Response:
        item = self.get_object()
        return self.run(
            request,
            s.ReasonInput,
            lambda d: aspirate_services.aspirate_reject(
                aspirate=item, actor=request.user, reason=d["reason"]
            ),
        )

    @extend_schema(request=s.ReasonInput, responses=s.AspirateSerializer)
    @action(detail=True, methods=["post"], url_path="release-quarantine")
    def release_quarantine(self, request: Request, code: str) -> Response:
        item = self.get_object()
        return self.run(
            request,
            s.ReasonInput,
            lambda d: aspirate_services.aspirate_release_quarantine(
                aspirate=item, actor=request.user, reason=d["reason"]
            ),
        )

    @extend_schema(request=s.ReasonInput, responses=s.AspirateSerializer)
    @action(detail=True, methods=["post"])
    def discard(self, request: Request, code: str) -> Response:
        item = self.get_object()
        return self.run(
            request,
            s.ReasonInput,
            lambda d: aspirate_services.aspirate_discard(
                aspirate=item, actor=request.user, reason=d["reason"]
            ),
        )

    @extend_schema(request=s.EmptyInput, responses={201: s.ProcessingSerializer})
    @action(detail=True, methods=["post"], url_path="start-processing")
    def start_processing(self, request: Request, code: str) -> Response:
        item = self.get_object()
        payload = s.EmptyInput(data=request.data)
        payload.is_valid(raise_exception=True)
        processing = processing_services.processing_start(
            aspirate=item, actor=request.user, started_at=payload.validated_data["at"]
        )
        return Response(s.ProcessingSerializer(processing).data, status=201)


# --- processing ------------------------------------------------------------------------------


class ProcessingFilter(StatusFilter):
    class Meta:
        model = Processing
        fields = ["participant", "status"]


class ProcessingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "processing"
    serializer_class = s.ProcessingSerializer
    filterset_class = ProcessingFilter
    ordering_fields = ["started_at", "code"]
    ordering = ["-started_at"]
    write_permissions = {
        "units": "biobank.add_productunit",
        "freezing_run": "biobank.add_freezingrun",
        "qc_release": "biobank.approve_qc_release",
        "qc_results": "biobank.add_qcresult",
        "passages": "biobank.add_passage",
    }

    def get_queryset(self) -> QuerySet[Processing]:
        return Processing.objects.select_related(
            "aspirate", "participant", "qc_release__signature"
        ).prefetch_related("passages", "qc_results")

    @extend_schema(request=s.PassageInput, responses=s.ProcessingSerializer)
    @action(detail=True, methods=["post"])
    def passages(self, request: Request, code: str) -> Response:
        item = self.get_object()

        def call(d: dict[str, Any]) -> Processing:
            processing_services.passage_record(processing=item, actor=request.user, **d)
            return item

        return self.run(request, s.PassageInput, call)

    @extend_schema(request=s.HarvestInput, responses=s.ProcessingSerializer)
    @action(detail=True, methods=["post"])
    def harvest(self, request: Request, code: str) -> Response:
        item = self.get_object()
        return self.run(
            request,
            s.HarvestInput,
            lambda d: processing_services.processing_harvest(
                processing=item, actor=request.user, **d
            ),
        )

    @extend_schema(request=s.ReasonInput, responses=s.ProcessingSerializer)
    @action(detail=True, methods=["post"])
    def fail(self, request: Request, code: str) -> Response:
        item = self.get_object()
        return self.run(
            request,
            s.ReasonInput,
            lambda d: processing_services.processing_fail(
                processing=item, actor=request.user, reason=d["reason"]
            ),
        )

    @extend_schema(request=s.QcResultInput, responses=s.ProcessingSerializer)
    @action(detail=True, methods=["post"], url_path="qc-results")
    def qc_results(self, request: Request, code: str) -> Response:
        item = self.get_object()

        def call(d: dict[str, Any]) -> Processing:
            processing_services.qc_result_record(processing=item, actor=request.user, **d)
            return item

        return self.run(request, s.QcResultInput, call)

    @extend_schema(request=s.QcReleaseInput, responses=s.ProcessingSerializer)
    @action(detail=True, methods=["post"], url_path="qc-release")
    def qc_release(self, request: Request, code: str) -> Response:
        item = self.get_object()

        def call(d: dict[str, Any]) -> Processing:
            release_services.processing_qc_release(
                processing=item, actor=request.user, password=d["password"], comment=d["comment"]
            )
            return item

        return self.run(request, s.QcReleaseInput, call)

    @extend_schema(request=s.UnitsCreateInput, responses={201: s.UnitSerializer(many=True)})
    @action(detail=True, methods=["post"])
    def units(self, request: Request, code: str) -> Response:
        """Bulk: fill all units of a harvested product in one atomic request."""
        item = self.get_object()
        payload = s.UnitsCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        specs = [unit_services.UnitSpec(**spec) for spec in payload.validated_data["units"]]
        created = unit_services.units_create(
            processing=item,
            specs=specs,
            actor=request.user,
            created_at=payload.validated_data["created_at"],
        )
        units = units_with_location(
            ProductUnit.objects.filter(pk__in=[u.pk for u in created])
        ).select_related("participant", "aspirate", "processing", "freezing_run")
        return Response(s.UnitSerializer(units, many=True).data, status=201)

    @extend_schema(request=s.FreezingRunInput, responses=s.ProcessingSerializer)
    @action(detail=True, methods=["post"], url_path="freezing-run")
    def freezing_run(self, request: Request, code: str) -> Response:
        item = self.get_object()

        def call(d: dict[str, Any]) -> Processing:
            if d.get("units"):
                units = [
                    resolve(raw, {Kind.UNIT}, "units", viewer=request.user) for raw in d["units"]
                ]
            else:
                units = list(item.units.filter(status="created"))
            unit_services.freezing_run_record(
                processing=item,
                units=units,
                started_at=d["started_at"],
                finished_at=d["finished_at"],
                rate_c_per_min=d["rate_c_per_min"],
                program=d["program"],
                actor=request.user,
            )
            return item

        return self.run(request, s.FreezingRunInput, call)


# --- units -----------------------------------------------------------------------------------


class UnitFilter(StatusFilter):
    processing = filters.CharFilter(field_name="processing__code")
    container_type = filters.CharFilter(field_name="container_type")
    container = filters.CharFilter(method="in_container")

    class Meta:
        model = ProductUnit
        fields = ["participant", "status", "processing", "container_type", "container"]

    def in_container(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            placements__container__code=value.strip().upper(), placements__ended_at__isnull=True
        )


def _unit_step(
    name: str, input_class: type[serializers.Serializer], call: Callable[..., Any]
) -> Any:
    """One POST action on a unit that runs a storage or lifecycle service."""

    def step(self: Any, request: Request, code: str) -> Response:
        unit = self.get_object()

        def apply(d: dict[str, Any]) -> ProductUnit:
            call(unit, request.user, d)  # returns a placement or the unit: answer with the unit
            return unit

        return self.run(request, input_class, apply)

    # The router maps the HTTP method to the function's name: set it before decorating.
    step.__name__ = name
    step.__doc__ = f"{name.replace('_', ' ').capitalize()} this unit."
    decorated = action(detail=True, methods=["post"], url_path=name.replace("_", "-"))(step)
    return extend_schema(request=input_class, responses=s.UnitSerializer)(decorated)


def _container(raw: str, viewer: Any) -> Container:
    return resolve(raw, {Kind.BOX, Kind.CONTAINER}, "container", viewer=viewer)


class UnitViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "productunit"
    serializer_class = s.UnitSerializer
    filterset_class = UnitFilter
    ordering_fields = ["code", "created_at", "status"]
    ordering = ["code"]

    def get_queryset(self) -> QuerySet[ProductUnit]:
        return units_with_location(
            ProductUnit.objects.select_related(
                "participant", "aspirate", "processing", "freezing_run"
            )
        )

    store = _unit_step(
        "store",
        s.StoreInput,
        lambda u, user, d: storage_services.unit_place(
            unit=u,
            container=_container(d["container"], user),
            position=d["position"] or None,
            actor=user,
            at=d["at"],
        ),
    )
    move = _unit_step(
        "move",
        s.MoveInput,
        lambda u, user, d: storage_services.unit_move(
            unit=u,
            container=_container(d["container"], user),
            position=d["position"] or None,
            reason=d["reason"],
            actor=user,
            at=d["at"],
        ),
    )
    check_out = _unit_step(
        "check_out",
        s.OptionalReasonInput,
        lambda u, user, d: storage_services.unit_check_out(
            unit=u, actor=user, reason=d["reason"], at=d["at"]
        ),
    )
    check_in = _unit_step(
        "check_in",
        s.EmptyInput,
        lambda u, user, d: storage_services.unit_check_in(unit=u, actor=user, at=d["at"]),
    )
    remove = _unit_step(
        "remove",
        s.ReasonInput,
        lambda u, user, d: storage_services.unit_remove(unit=u, actor=user, reason=d["reason"]),
    )
    quarantine = _unit_step(
        "quarantine",
        s.ReasonInput,
        lambda u, user, d: unit_services.unit_transition(
            unit=u, action="quarantine", actor=user, reason=d["reason"]
        ),
    )
    lift_quarantine = _unit_step(
        "lift_quarantine",
        s.ReasonInput,
        lambda u, user, d: unit_services.unit_transition(
            unit=u, action="lift_quarantine", actor=user, reason=d["reason"]
        ),
    )
    release = _unit_step(
        "release",
        s.OptionalReasonInput,
        lambda u, user, d: unit_services.unit_transition(
            unit=u, action="release", actor=user, reason=d["reason"], at=d["at"]
        ),
    )
    return_to_stock = _unit_step(
        "return_to_stock",
        s.ReasonInput,
        lambda u, user, d: unit_services.unit_transition(
            unit=u, action="return_to_stock", actor=user, reason=d["reason"]
        ),
    )
    discard = _unit_step(
        "discard",
        s.ReasonInput,
        lambda u, user, d: unit_services.unit_transition(
            unit=u, action="discard", actor=user, reason=d["reason"]
        ),
    )


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
        found = storage_services.free_position_suggest(
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


class ContainerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "container"
    serializer_class = s.ContainerSerializer
    filterset_class = ContainerFilter
    ordering_fields = ["path", "code"]
    ordering = ["path"]
    write_permissions = {"store": "biobank.change_productunit"}

    def get_queryset(self) -> QuerySet[Container]:
        return Container.objects.select_related("storage_unit", "parent", "box_type")

    @extend_schema(responses=s.PositionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def positions(self, request: Request, code: str) -> Response:
        """Every position of a box with the unit in it (null when free)."""
        box = self.get_object()
        if not box.is_box:
            raise ServiceError(f"{box.code} is a {box.kind} without positions.", field="code")
        from biobank.selectors_storage import box_map

        grid = box_map(box=box)
        rows = [
            {
                "position": cell.label,
                "row": cell.row,
                "column": cell.column,
                "unit": cell.placement.unit.code if cell.placement else None,
                "checked_out": bool(cell.placement and cell.placement.checked_out_at),
            }
            for _, cells in grid.rows
            for cell in cells
        ]
        return Response(rows)

    @extend_schema(request=s.BoxStoreInput, responses=s.PositionSerializer(many=True))
    @action(detail=True, methods=["post"])
    def store(self, request: Request, code: str) -> Response:
        """Bulk: store many units into this box (or container) in one atomic request."""
        box = self.get_object()
        payload = s.BoxStoreInput(data=request.data)
        payload.is_valid(raise_exception=True)
        with transaction.atomic():
            for index, entry in enumerate(payload.validated_data["placements"]):
                field = f"placements.{index}"
                unit = resolve(entry["unit"], {Kind.UNIT}, f"{field}.unit", viewer=request.user)
                try:
                    storage_services.unit_place(
                        unit=unit,
                        container=box,
                        position=entry["position"] or None,
                        actor=request.user,
                    )
                except ServiceError as exc:
                    exc.message = f"{unit.code} ({field}): {exc.message}"
                    exc.field = f"{field}.{exc.field or 'unit'}"
                    raise
        if box.is_box:
            return self.positions(request, code)
        placed = Placement.objects.filter(container=box, ended_at__isnull=True).select_related(
            "unit"
        )
        return Response(
            [
                {
                    "position": "",
                    "row": 0,
                    "column": 0,
                    "unit": p.unit.code,
                    "checked_out": bool(p.checked_out_at),
                }
                for p in placed
            ]
        )


# --- events and doses ------------------------------------------------------------------------


class EventFilter(filters.FilterSet):
    participant = filters.CharFilter(field_name="participant__code")
    item = filters.CharFilter(field_name="item_code")
    item_kind = filters.CharFilter(field_name="item_kind")
    action = filters.CharFilter(field_name="action")
    after = filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")

    class Meta:
        model = CustodyEvent
        fields = ["participant", "item", "item_kind", "action", "after"]


class EventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """The chain-of-custody log (read-only). Blinded users see only aspirate and dose steps."""

    model_name = "custodyevent"
    serializer_class = s.EventSerializer
    filterset_class = EventFilter
    ordering = ["at", "id"]
    lookup_field = "pk"
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[CustodyEvent]:
        qs = CustodyEvent.objects.select_related("participant", "actor", "site")
        return policy_for(self.request.user).rows(qs)

    def get_object(self) -> Any:
        obj = self.get_queryset().filter(pk=self.kwargs.get("pk")).first()
        if obj is None:
            raise NotFound("No such event.", code="not_found")
        return obj


class DoseFilter(StatusFilter):
    visit = filters.CharFilter(field_name="visit__visit_type__code")

    class Meta:
        model = Dose
        fields = ["participant", "status", "visit"]


class DoseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "dose"
    serializer_class = s.DoseSerializer
    filterset_class = DoseFilter
    ordering = ["code"]
    write_permissions = {
        "create": "biobank.prepare_dose",
        "release": "biobank.release_dose",
        "deviation": "biobank.release_dose",
        "make_ready": "biobank.prepare_dose",
        "cancel": "biobank.prepare_dose",
        "dispatch_dose": "biobank.administer_dose",
        "administer": "biobank.administer_dose",
    }

    def get_queryset(self) -> QuerySet[Dose]:
        return Dose.objects.select_related(
            "participant__study",
            "visit__visit_type",
            "processing",
            "release_signature",
            "deviation_signature",
        ).prefetch_related(Prefetch("dose_units", queryset=DoseUnit.objects.select_related("unit")))

    @extend_schema(request=s.DosePrepareInput, responses={201: s.DoseSerializer})
    def create(self, request: Request) -> Response:
        """Plan the visit's dose from its recorded weight; MSC draws on the participant's own
        units (default: the suggestion) or a fresh product."""

        def call(d: dict[str, Any]) -> Dose:
            visit = visit_of(d["participant"], d["visit"], viewer=request.user)
            raw_units = [*d["units"], *([d["unit"]] if d.get("unit") else [])]
            units = [resolve(raw, {Kind.UNIT}, "units", viewer=request.user) for raw in raw_units]
            processing = (
                resolve(d["processing"], {Kind.PROCESSING}, "processing", viewer=request.user)
                if d.get("processing")
                else None
            )
            return dose_services.dose_prepare(
                visit=visit, actor=request.user, units=units, processing=processing
            )

        return self.run(request, s.DosePrepareInput, call, status=201)

    @extend_schema(request=s.PasswordInput, responses=s.DoseSerializer)
    @action(detail=True, methods=["post"])
    def release(self, request: Request, code: str) -> Response:
        dose = self.get_object()
        return self.run(
            request,
            s.PasswordInput,
            lambda d: dose_services.dose_release(
                dose=dose, actor=request.user, password=d["password"]
            ),
        )

    @extend_schema(request=s.DeviationInput, responses=s.DoseSerializer)
    @action(detail=True, methods=["post"])
    def deviation(self, request: Request, code: str) -> Response:
        """QA signs a documented deviation: the dose may then fall outside its window."""
        dose = self.get_object()
        return self.run(
            request,
            s.DeviationInput,
            lambda d: dose_services.dose_deviation_sign(
                dose=dose, actor=request.user, password=d["password"], reason=d["reason"]
            ),
        )

    @extend_schema(request=s.DoseReadyInput, responses=s.DoseSerializer)
    @action(detail=True, methods=["post"], url_path="make-ready")
    def make_ready(self, request: Request, code: str) -> Response:
        """Thaw the units / take the fresh product / fill saline; the expiry is computed."""
        dose = self.get_object()
        return self.run(
            request,
            s.DoseReadyInput,
            lambda d: dose_services.dose_make_ready(
                dose=dose,
                actor=request.user,
                ready_at=d["ready_at"],
                post_thaw_cell_count=d["post_thaw_cell_count"],
                post_thaw_viability_pct=d["post_thaw_viability_pct"],
                unit_counts=[
                    dose_services.UnitCount(
                        u["unit"], u["post_thaw_cell_count"], u["post_thaw_viability_pct"]
                    )
                    for u in d["units"]
                ],
                saline_lot=d["saline_lot"],
            ),
        )

    @extend_schema(request=s.ReasonInput, responses=s.DoseSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, code: str) -> Response:
        dose = self.get_object()
        return self.run(
            request,
            s.ReasonInput,
            lambda d: dose_services.dose_cancel(dose=dose, actor=request.user, reason=d["reason"]),
        )

    @extend_schema(request=s.DispatchInput, responses=s.DoseSerializer)
    # Not named "dispatch": that is the view's own request entry point.
    @action(detail=True, methods=["post"], url_path="dispatch", url_name="dispatch")
    def dispatch_dose(self, request: Request, code: str) -> Response:
        """Chain-of-identity check (dose scan vs participant scan), expiry check, dispatch."""
        dose = self.get_object()
        return self.run(
            request,
            s.DispatchInput,
            lambda d: dose_services.dose_dispatch(
                dose_scan=d.get("dose_scan") or dose.code,
                participant_scan=d["participant_scan"],
                actor=request.user,
                at=d["at"],
            ),
        )

    @extend_schema(request=s.AdministerInput, responses=s.DoseSerializer)
    @action(detail=True, methods=["post"])
    def administer(self, request: Request, code: str) -> Response:
        """Bedside identity check, expiry check, then the administration is recorded."""
        dose = self.get_object()
        return self.run(
            request,
            s.AdministerInput,
            lambda d: dose_services.dose_administer(
                dose_scan=d.get("dose_scan") or dose.code,
                participant_scan=d["participant_scan"],
                actor=request.user,
                administered_by=d["administered_by"],
                route=d["route"],
                at=d["at"],
            ),
        )

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
        try:
            days = int(request.query_params.get("days", "30"))
        except ValueError as exc:
            raise ServiceError("days must be a whole number.", field="days") from exc
        if not 1 <= days <= 365:
            raise ServiceError("days must be 1–365.", field="days")
        hidden = policy_for(request.user).hidden_fields("dose")
        rows = []
        for row in dose_services.doses_due(within_days=days):
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


class IdentityCheckViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Every chain-of-identity check, matched or not (read-only)."""

    model_name = "identitycheck"
    serializer_class = s.IdentityCheckSerializer
    filterset_class = IdentityCheckFilter
    ordering = ["checked_at", "id"]
    lookup_field = "pk"
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[IdentityCheck]:
        return IdentityCheck.objects.select_related("dose", "checked_by")

    def get_object(self) -> Any:
        obj = self.get_queryset().filter(pk=self.kwargs.get("pk")).first()
        if obj is None:
            raise NotFound("No such identity check.", code="not_found")
        return obj
