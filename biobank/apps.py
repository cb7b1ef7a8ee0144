from django.apps import AppConfig


class BiobankConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "biobank"
    verbose_name = "Biobank"
