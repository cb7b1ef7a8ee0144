from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "SMART-MS biobank"
admin.site.site_title = "Biobank"
admin.site.index_title = "Sample tracking"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", include("biobank.api.urls")),
]
