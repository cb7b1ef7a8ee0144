from django.apps import AppConfig


class BiobankConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "biobank"
    verbose_name = "Biobank"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from .middleware import session_mark_seen

        user_logged_in.connect(session_mark_seen, dispatch_uid="biobank-session-seen")
