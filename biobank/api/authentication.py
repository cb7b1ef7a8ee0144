"""Token authentication with an optional lifetime (kept apart from views: DRF imports it early)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token


def token_lifetime() -> timedelta | None:
    hours = settings.API_TOKEN_LIFETIME_HOURS
    return timedelta(hours=hours) if hours else None


def token_expires_at(token: Token) -> datetime | None:
    lifetime = token_lifetime()
    return token.created + lifetime if lifetime else None


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token, refused once older than ``API_TOKEN_LIFETIME_HOURS`` (0: no limit).

    An administrator revokes a token by deleting it (admin → Auth Token → Tokens).
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        user, token = super().authenticate_credentials(key)
        expires = token_expires_at(token)
        if expires is not None and timezone.now() >= expires:
            raise exceptions.AuthenticationFailed("Token expired; request a new one.")
        return user, token
