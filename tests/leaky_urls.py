"""A URL conf with a deliberately unguarded view, to show that the blinding sweep has teeth."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from biobank.models import ProductUnit
from config.urls import urlpatterns as real_urlpatterns


def leaky_unit(request: HttpRequest, code: str) -> JsonResponse:
    # No visibility check at all: answers with the unit behind any code.
    unit = ProductUnit.objects.order_by("pk").first()
    return JsonResponse({"asked": code, "unit": unit.code if unit else None})


def mystery(request: HttpRequest, widget: str) -> JsonResponse:
    return JsonResponse({"widget": widget})


urlpatterns = [
    path("api/leaky/<code>/", leaky_unit),
    path("api/mystery/<widget>/", mystery),
    *real_urlpatterns,
]
