from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.accounts"
    label = "accounts"
    verbose_name = "收费与账务"
