"""The OpenAPI schema documents the error answers of every operation, not only the 2xx."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

from .errors import ERROR_RESPONSES

WRITE_METHODS = {"POST", "PUT", "PATCH"}


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        bodies = super()._get_response_bodies(direction)
        codes = [404, 405, 500]
        if self.method in WRITE_METHODS:
            codes += [400, 409, 413, 415]
        elif self.method == "DELETE":
            codes += [409]
        else:
            codes += [400]  # a bad filter or query parameter
        if self.get_auth():
            codes += [401, 403]
        for code in sorted(codes):
            if str(code) not in bodies:
                bodies[str(code)] = self._get_response_for_code(
                    ERROR_RESPONSES[code], str(code), ["application/json"], direction
                )
        return bodies
