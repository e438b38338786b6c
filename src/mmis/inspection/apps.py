from django.apps import AppConfig


class InspectionConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.inspection"
    label = "inspection"
    verbose_name = "用电检查"
