from django.apps import AppConfig


class ServicesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.services"
    label = "services"
    verbose_name = "业扩与变更"
