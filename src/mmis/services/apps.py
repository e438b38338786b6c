from django.apps import AppConfig


class ServicesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.services"
    label = "services"
    verbose_name = "业扩与变更"

    def ready(self) -> None:
        # registers the effect handlers named by the process definitions
        from mmis.services import effects  # noqa: F401
