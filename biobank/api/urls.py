from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import labels
from .scan import ScanView

urlpatterns = [
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
]
