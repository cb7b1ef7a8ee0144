from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from . import labels, reports, shipments, views
from .auth import TokenObtainView
from .scan import ScanView

router = SimpleRouter(trailing_slash=True)
router.register("participants", views.ParticipantViewSet, basename="participants")
router.register("visits", views.VisitViewSet, basename="visits")
router.register("aspirates", views.AspirateViewSet, basename="aspirates")
router.register("processings", views.ProcessingViewSet, basename="processings")
router.register("units", views.UnitViewSet, basename="units")
router.register("storage-units", views.StorageUnitViewSet, basename="storage-units")
router.register("containers", views.ContainerViewSet, basename="containers")
router.register("events", views.EventViewSet, basename="events")
router.register("doses", views.DoseViewSet, basename="doses")
router.register("identity-checks", views.IdentityCheckViewSet, basename="identity-checks")
router.register("shipments", shipments.ShipmentViewSet, basename="shipments")

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
        r"^reports/participants/(?P<code>[^/.]+)\.(?P<fmt>[a-z]+)$",
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
    re_path(
        r"^charts/temperature/(?P<code>[^/.]+)\.(?P<fmt>[a-z]+)$",
        reports.TemperatureChartView.as_view(),
        name="chart-temperature",
    ),
    re_path(
        r"^charts/occupancy/(?P<code>[^/.]+)\.(?P<fmt>[a-z]+)$",
        reports.OccupancyChartView.as_view(),
        name="chart-occupancy",
    ),
    re_path(
        r"^charts/crossover/(?P<code>[^/.]+)\.(?P<fmt>[a-z]+)$",
        reports.CrossoverChartView.as_view(),
        name="chart-crossover",
    ),
    *router.urls,
]
