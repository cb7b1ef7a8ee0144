from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import Signature, SignatureMeaning


class PermissionRefused(ServiceError):
    status_code = 403


def require_perm(user: AbstractBaseUser, perm: str, what: str) -> None:
    if not (user and user.is_active and user.has_perm(perm)):
        raise PermissionRefused(f"You are not authorised to {what}.", code="permission_denied")


SIGNED_REASON_MIN = 10  # a signed deviation or unblinding says why in a sentence, not "ok"


def signed_reason(reason: str | None, *, ask: str) -> str:
    """The reason given with a signature, stripped; refused when too short to mean anything."""
    reason = (reason or "").strip()
    if len(reason) < SIGNED_REASON_MIN:
        raise ServiceError(
            f"Give {ask} (at least {SIGNED_REASON_MIN} characters).",
            code="reason_required",
            field="reason",
        )
    return reason


def signature_sign(
    *, user: AbstractBaseUser, password: str, meaning: str, record: str
) -> Signature:
    """Sign after re-authentication (21 CFR 11.200): the password is asked again every time."""
    if meaning not in SignatureMeaning.values:
        raise ServiceError("Unknown signature meaning.", field="meaning")
    if not password or not user.check_password(password):
        raise ServiceError(
            "The password is not correct: the signature was not applied.",
            code="bad_signature_password",
            field="password",
        )
    name = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return Signature.objects.create(
        signer=user,
        signer_name=(name or user.get_username())[:200],
        signed_at=timezone.now(),
        meaning=meaning,
        record=record,
    )
