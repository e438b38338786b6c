from django.apps import AppConfig


class ServiceDeskConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.service_desk"
    label = "service_desk"
    verbose_name = "95598客服"
