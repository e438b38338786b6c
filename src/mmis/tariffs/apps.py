from django.apps import AppConfig


class TariffsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.tariffs"
    label = "tariffs"
    verbose_name = "电价"
