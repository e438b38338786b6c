from django.apps import AppConfig


class LossesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.losses"
    label = "losses"
    verbose_name = "线损"
