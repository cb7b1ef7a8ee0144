"""The shape of a catalogued step: its inputs and the step itself, and inputs steps share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from biobank.identifiers import Kind


@dataclass(frozen=True)
class Input:
    """One input of a step. ``type`` is one of: text, reason, password, int, decimal, datetime,
    date, choice, bool, file, code (an item ID, resolved like a scan), codes (a list of them),
    rows (a list of records, each with the ``of`` inputs)."""

    name: str
    type: str = "text"
    required: bool = True
    help: str = ""
    max_length: int | None = None
    min_value: int | Decimal | None = None
    max_value: int | Decimal | None = None
    max_digits: int = 0
    decimal_places: int = 0
    choices: tuple[tuple[str, str], ...] = ()
    kinds: frozenset[Kind] = frozenset()
    of: tuple[Input, ...] = ()
    max_items: int = 200
    default: Any = None


Run = Callable[[Any, AbstractBaseUser, dict[str, Any]], Any]


@dataclass(frozen=True)
class Action:
    kind: str  # "aspirate", "processing", "unit", "container", "dose", "visit", "participant"
    name: str
    label: str
    permission: str
    inputs: tuple[Input, ...]
    run: Run
    on_item: bool = True  # False: the step creates an item (API: POST to the collection)
    doc: str = ""

    @property
    def path(self) -> str:
        return self.name.replace("_", "-")

    @property
    def needs_signature(self) -> bool:
        return any(i.type == "password" for i in self.inputs)

    @property
    def needs_reason(self) -> bool:
        return any(i.type == "reason" and i.required for i in self.inputs)


# --- inputs used by several steps ------------------------------------------------------------

AT = Input("at", "datetime", required=False, help="When it happened (default: now)")


def reason(required: bool = True, *, name: str = "reason", help: str = "") -> Input:
    return Input(name, "reason", required=required, max_length=2000, default="", help=help)


PASSWORD = Input("password", "password", max_length=200, help="Your password: the e-signature")


def viability(name: str, required: bool = True) -> Input:
    return Input(
        name, "decimal", required, max_digits=4, decimal_places=1, min_value=0, max_value=100
    )


def count(name: str, top: int = 10**12, required: bool = True, help: str = "") -> Input:
    return Input(name, "int", required, help=help, min_value=1, max_value=top)


def code(name: str, *kinds: Kind, required: bool = True, help: str = "") -> Input:
    return Input(name, "code", required, help=help, max_length=80, kinds=frozenset(kinds))


def codes(name: str, *kinds: Kind, required: bool = True, help: str = "", most: int = 200) -> Input:
    """A list of item IDs, each resolved like a scan."""
    return Input(
        name, "codes", required, help=help, max_length=80, kinds=frozenset(kinds), max_items=most
    )


def choices(enum: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(value), str(label)) for value, label in enum.choices)


def calls(service: Callable[..., Any], item_as: str, **renamed: str) -> Run:
    """The usual step: the service takes the item under its own name, the actor, and the
    inputs as they are named (``renamed`` maps an input to the service's keyword)."""

    def run(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
        kwargs = {renamed.get(k, k): v for k, v in d.items()}
        return service(**{item_as: item}, actor=actor, **kwargs)

    return run


def quarantine_lift(
    kind: str, name: str, label: str, service: Callable[..., Any], doc: str
) -> Action:
    """Lifting a quarantine, for any kind: QA's permission, the password (the e-signature) and
    a reason; the service signs and applies it."""
    from ..units import LIFT_QUARANTINE  # the permission lives with the lift service

    return Action(
        kind, name, label, LIFT_QUARANTINE, (PASSWORD, reason()), calls(service, kind), doc=doc
    )
