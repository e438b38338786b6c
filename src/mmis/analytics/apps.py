from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.analytics"
    label = "analytics"
    verbose_name = "决策分析"
