from django.apps import AppConfig


class CustomersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.customers"
    label = "customers"
    verbose_name = "客户档案"
