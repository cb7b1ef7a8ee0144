"""The action catalogue: every step a person can take, once.

One entry per step: its name (the same word in the API path, the admin action, the service and
the custody event), its label, the permission it needs, its inputs and the service it calls.
The API generates its POST actions from it, the admin its actions, the scan pages ask it for
permissions; `action_run` is the one place that checks the permission and resolves scanned
IDs before the service runs. A new step is one row in the transition table, one service and
one entry in the module of its kind (samples, storage, doses, shipments).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from biobank.errors import Forbidden, NotFound, ServiceError
from biobank.identifiers import with_article
from biobank.selectors.scan import scans_resolve
from biobank.visibility import kind_of_model

from ..lifecycle import allowed_actions
from . import doses, samples, shipments, storage
from .inputs import Action, Input

ACTIONS: tuple[Action, ...] = (*samples.STEPS, *storage.STEPS, *doses.STEPS, *shipments.STEPS)
CATALOGUE: dict[tuple[str, str], Action] = {(a.kind, a.name): a for a in ACTIONS}


def actions_for(kind: str, *, on_item: bool | None = None) -> list[Action]:
    """The steps of one kind of item, in catalogue order."""
    return [a for a in ACTIONS if a.kind == kind and on_item in (None, a.on_item)]


def action_get(kind: str, name: str) -> Action:
    try:
        return CATALOGUE[(kind, name)]
    except KeyError:
        steps = ", ".join(a.name for a in actions_for(kind))
        raise NotFound(
            f"'{name}' is not a step for {with_article(kind)}. Steps: {steps}.",
            code="unknown_action",
            field="action",
        ) from None


def action_permitted(action: Action, actor: Any) -> bool:
    return bool(actor and actor.is_authenticated and actor.has_perm(action.permission))


def actions_open(item: Any, actor: Any) -> list[str]:
    """The steps ``actor`` may take on ``item`` now: the table allows them from its status, the
    catalogue offers them on an item (each has its page form and API path), and the role may
    take them. Table rows that are outcomes of another step (a partial receipt, the receipt
    completed by the last find) are not steps anyone takes."""
    allowed = set(allowed_actions(item))
    return [
        a.name
        for a in actions_for(kind_of_model(item), on_item=True)
        if a.name in allowed and action_permitted(a, actor)
    ]


def action_require(action: Action, actor: Any) -> None:
    """Refuse a role the catalogue does not let take the step (403 naming the step)."""
    if not action_permitted(action, actor):
        raise Forbidden(
            f"Your role may not {action.label.lower()}.", code="permission_denied", field=None
        )


def _resolved(inputs: tuple[Input, ...], data: dict[str, Any], actor: Any, at: str) -> dict:
    """Scanned IDs in the input become items, read through the viewer's visibility policy,
    one query per kind however long the list; a refusal names the field (``container``,
    ``units.2``, ``placements.0.unit``)."""
    out = dict(data)
    for spec in inputs:
        value = data.get(spec.name)
        if value in (None, "", []):
            continue
        where = f"{at}{spec.name}"
        if spec.type == "code":
            out[spec.name] = _items([value], spec, actor, [where])[0]
        elif spec.type == "codes":
            out[spec.name] = _items(value, spec, actor, [f"{where}.{i}" for i in range(len(value))])
        elif spec.type == "rows":
            rows = [dict(row) for row in value]
            for column in (c for c in spec.of if c.type == "code"):
                raws = [row.get(column.name) for row in rows]
                at_row = [i for i, raw in enumerate(raws) if raw not in (None, "")]
                fields = [f"{where}.{i}.{column.name}" for i in at_row]
                items = _items([raws[i] for i in at_row], column, actor, fields)
                for i, item in zip(at_row, items, strict=True):
                    rows[i][column.name] = item
            out[spec.name] = rows
    return out


def _items(raws: list[Any], spec: Input, actor: Any, fields: list[str]) -> list[Any]:
    try:
        found = scans_resolve(
            raws=[str(raw) for raw in raws], viewer=actor, kinds=set(spec.kinds) or None
        )
    except ServiceError as exc:
        exc.field = fields[exc.index or 0]
        exc.index = None  # the field names the place now
        raise
    return [result.item for result in found]


def action_run(*, action: Action, item: Any, actor: AbstractBaseUser, data: dict[str, Any]) -> Any:
    """Run one catalogued step for ``actor``: permission, scanned IDs, then the service.

    Every interface comes through here, so a role that may not take a step is refused the same
    way everywhere (403 ``permission_denied`` naming the step), before anything is read.
    Not atomic itself: each service is, and a refusal that records evidence (an identity
    mismatch) must keep that record.
    """
    action_require(action, actor)
    if action.on_item and item is None:
        raise ServiceError(f"{action.label}: which item?", code="required", field="code")
    return action.run(item, actor, _resolved(action.inputs, data, actor, ""))
