from django.apps import AppConfig


class PortalConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.portal"
    label = "portal"
    verbose_name = "客户服务"
