from django.apps import AppConfig


class ControlConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.control"
    label = "control"
    verbose_name = "营销管控"
