from django.apps import AppConfig


class OrgConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.org"
    label = "org"
    verbose_name = "组织与权限"
