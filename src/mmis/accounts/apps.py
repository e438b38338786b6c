from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.accounts"
    label = "accounts"
    verbose_name = "收费与账务"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from mmis.accounts.models import Policy
        from mmis.accounts.services import clear_policy_cache

        post_save.connect(clear_policy_cache, sender=Policy, dispatch_uid="accounts_policy_saved")
        post_delete.connect(clear_policy_cache, sender=Policy, dispatch_uid="accounts_policy_deleted")
