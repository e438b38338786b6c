from django.apps import AppConfig


class WebConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.web"
    label = "web"
    verbose_name = "工作台"
