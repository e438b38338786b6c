from django.apps import AppConfig


class ReadingsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.readings"
    label = "readings"
    verbose_name = "抄表与采集"
