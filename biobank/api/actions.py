"""API actions generated from the action catalogue (biobank/services/actions.py).

Each catalogued step becomes ``POST /api/<kind>/<ID>/<step>/`` (or ``POST /api/<kind>/`` for a
step that creates an item) with an input serializer built from the step's inputs, the
permission the catalogue names and an OpenAPI description. Nothing about a step is written here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action as drf_action
from rest_framework.request import Request
from rest_framework.response import Response

from biobank.services.actions import Action, Input, action_get, action_run, actions_for

from .fields import PlausibleDateTimeField


def _field(spec: Input, owner: str) -> serializers.Field:
    optional: dict[str, Any] = {}
    if not spec.required:
        optional = {"required": False, "default": spec.default}
        if spec.type not in ("rows", "codes", "bool"):
            optional["allow_null"] = spec.default is None
    if spec.help:
        optional["help_text"] = spec.help
    bounds = {
        k: v
        for k, v in (("min_value", spec.min_value), ("max_value", spec.max_value))
        if v is not None
    }
    if spec.type in ("text", "reason", "password", "code"):
        if spec.type == "password":
            optional |= {"write_only": True, "style": {"input_type": "password"}}
        if not spec.required and spec.default == "":
            optional["allow_blank"] = True
        # A scan keeps its own spacing: the resolver explains stray characters.
        trim = spec.name != "scan" and not spec.name.endswith("_scan")
        return serializers.CharField(max_length=spec.max_length, trim_whitespace=trim, **optional)
    if spec.type == "int":
        return serializers.IntegerField(**bounds, **optional)
    if spec.type == "decimal":
        return serializers.DecimalField(
            max_digits=spec.max_digits, decimal_places=spec.decimal_places, **bounds, **optional
        )
    if spec.type == "datetime":
        return PlausibleDateTimeField(**optional)
    if spec.type == "date":
        return serializers.DateField(**optional)
    if spec.type == "choice":
        return serializers.ChoiceField(choices=list(spec.choices), **optional)
    if spec.type == "bool":
        return serializers.BooleanField(**optional)
    if spec.type == "file":
        return serializers.FileField(**optional)
    if spec.type == "codes":
        if not spec.required:
            optional["default"] = list
        return serializers.ListField(
            child=serializers.CharField(max_length=spec.max_length),
            max_length=spec.max_items,
            **optional,
        )
    if spec.type == "rows":
        if not spec.required:
            optional["default"] = list
        # Schema component names must be unique: the row is named after its step.
        return _serializer(spec.of, owner.removesuffix("Input") + _camel(spec.name) + "Row")(
            many=True, allow_empty=not spec.required, max_length=spec.max_items, **optional
        )
    raise ValueError(f"Unknown input type {spec.type!r} for {spec.name}")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def _serializer(inputs: tuple[Input, ...], name: str) -> type[serializers.Serializer]:
    fields = {spec.name: _field(spec, name) for spec in inputs}
    return type(name, (serializers.Serializer,), fields)


@cache
def input_serializer(kind: str, name: str) -> type[serializers.Serializer]:
    """The request body of a step (named for the schema: ``<Kind><Step>Input``)."""
    step = action_get(kind, name)
    return _serializer(step.inputs, f"{_camel(kind)}{_camel(name)}Input")


def step_data(request: Request, step: Action) -> dict[str, Any]:
    payload = input_serializer(step.kind, step.name)(data=request.data)
    payload.is_valid(raise_exception=True)
    return dict(payload.validated_data)


# Method names that a viewset already uses for something else: its actions, and the HTTP
# methods (a step named "put" must not become the handler of PUT on the list).
_RESERVED = {"dispatch", "update", "list", "retrieve", "get", "post", "put", "patch", "delete"}


def step_method(
    step: Action, responses: Any, respond: Callable[..., Response], **options: Any
) -> Any:
    """The view method for one catalogued step on an item (``options``: DRF action options,
    e.g. the parsers of an upload)."""

    def method(self: Any, request: Request, code: str) -> Response:
        item = self.get_object()
        result = action_run(
            action=step, item=item, actor=request.user, data=step_data(request, step)
        )
        return respond(self, request, item, result)

    method.__name__ = f"{step.name}_step" if step.name in _RESERVED else step.name
    method.__doc__ = step.doc or f"{step.label} ({step.kind} {step.name.replace('_', ' ')})."
    method.catalogue = step  # type: ignore[attr-defined]
    decorated = drf_action(
        detail=True, methods=["post"], url_path=step.path, url_name=step.path, **options
    )(method)
    body: Any = input_serializer(step.kind, step.name)
    if any(spec.type == "file" for spec in step.inputs):
        body = {"multipart/form-data": body}
    return extend_schema(summary=step.label, request=body, responses=responses)(decorated)


def with_steps(kind: str, **special: tuple[Any, ...]) -> Callable[[type], type]:
    """Give a viewset one POST action per catalogued step of ``kind``.

    By default a step answers with the item as the viewset serializes it; ``special`` maps a
    step name to (schema responses, respond(view, request, item, result)[, action options])
    where it answers with something else.
    """

    def attach(viewset: type) -> type:
        for step in actions_for(kind, on_item=True):
            responses, respond, *options = special.get(
                step.name, (viewset.serializer_class, _item_answer)
            )
            method = step_method(step, responses, respond, **(options[0] if options else {}))
            setattr(viewset, method.__name__, method)
        return viewset

    return attach


def _item_answer(view: Any, request: Request, item: Any, result: Any) -> Response:
    return Response(view.get_serializer(view.get_queryset().get(pk=item.pk)).data)


def created_answer(view: Any, result: Any) -> Response:
    return Response(view.get_serializer(view.get_queryset().get(pk=result.pk)).data, status=201)


def create_method(kind: str, name: str, response: Any) -> Any:
    """``POST /api/<kind>/``: the catalogued step that creates an item of this kind."""
    step = action_get(kind, name)

    def create(self: Any, request: Request) -> Response:
        result = action_run(
            action=step, item=None, actor=request.user, data=step_data(request, step)
        )
        return created_answer(self, result)

    create.__doc__ = step.doc or step.label
    create.catalogue = step  # type: ignore[attr-defined]
    return extend_schema(
        summary=step.label,
        request=input_serializer(kind, name),
        responses={201: response},
    )(create)
