from django.apps import AppConfig


class AssetsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.assets"
    label = "assets"
    verbose_name = "计量资产"
