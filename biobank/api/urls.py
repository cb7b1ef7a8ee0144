from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from . import labels, reports, shipments, views
from .auth import TokenObtainView
from .scan import ScanView

router = SimpleRouter(trailing_slash=True)
# Each resource at /api/<prefix>/, its route names starting with the same prefix.
RESOURCES = {
    "participants": views.ParticipantViewSet,
    "visits": views.VisitViewSet,
    "aspirates": views.AspirateViewSet,
    "processings": views.ProcessingViewSet,
    "units": views.UnitViewSet,
    "storage-units": views.StorageUnitViewSet,
    "containers": views.ContainerViewSet,
    "events": views.EventViewSet,
    "doses": views.DoseViewSet,
    "identity-checks": views.IdentityCheckViewSet,
    "shipments": shipments.ShipmentViewSet,
}
for prefix, viewset in RESOURCES.items():
    router.register(prefix, viewset, basename=prefix)


def by_code_and_format(prefix: str) -> str:
    """``<prefix>/<ID>.<format>``: a document of one item, its format named by the suffix."""
    return rf"^{prefix}/(?P<code>[^/.]+)\.(?P<fmt>[a-z]+)$"


# The charts of one item: /api/charts/<chart>/<ID>.<format>.
CHARTS = {
    "temperature": reports.TemperatureChartView,
    "occupancy": reports.OccupancyChartView,
    "crossover": reports.CrossoverChartView,
}

urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("scan/", ScanView.as_view(), name="scan"),
    path("labels/batch/", labels.LabelBatchView.as_view(), name="label-batch"),
    re_path(
        r"^labels/(?P<code>[^/.]+)\.(?P<fmt>[^/.]+)$",
        labels.LabelView.as_view(),
        name="label-render",
    ),
    re_path(r"^labels/(?P<rest>(?!batch$)[^/]+)$", labels.LabelWithoutFormatView.as_view()),
    path("printers/", labels.PrinterList.as_view(), name="printer-list"),
    path("print-jobs/", labels.PrintJobList.as_view(), name="printjob-list"),
    path("print-jobs/<int:pk>/", labels.PrintJobDetail.as_view(), name="printjob-detail"),
    # Reports, exports, inventory and charts (issue 17).
    re_path(
        by_code_and_format("reports/participants"),
        reports.ParticipantReportView.as_view(),
        name="participant-report",
    ),
    re_path(
        r"^exports/audit-trail\.(?P<fmt>[a-z]+)$",
        reports.AuditExportView.as_view(),
        name="audit-export",
    ),
    path("inventory/participants/", reports.InventoryCountsView.as_view(), name="inventory-counts"),
    path(
        "inventory/participants/<str:code>/",
        reports.WhereaboutsView.as_view(),
        name="inventory-whereabouts",
    ),
    re_path(r"^inventory\.(?P<fmt>[a-z]+)$", reports.InventoryView.as_view(), name="inventory"),
    *(
        re_path(by_code_and_format(f"charts/{chart}"), view.as_view(), name=f"chart-{chart}")
        for chart, view in CHARTS.items()
    ),
    *router.urls,
]
