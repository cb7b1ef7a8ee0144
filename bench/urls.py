"""The project's URLs plus ``/bench/floor/``: the cheapest authenticated DRF endpoint.

The floor goes through the same middleware, token authentication, permission check,
content negotiation and JSON rendering as ``/api/scan/``, and nothing else, so the ratio
scan / floor is what the scan itself costs on top of the framework.
"""

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import urlpatterns as project_urlpatterns


class FloorView(APIView):
    """Authenticated like every API view; does no work."""

    schema = None

    def get(self, request: Request) -> Response:
        return Response({"ok": True})

    def post(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [path("bench/floor/", FloorView.as_view(), name="bench-floor"), *project_urlpatterns]
