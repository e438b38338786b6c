from django.apps import AppConfig


class InspectionConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.inspection"
    label = "inspection"
    verbose_name = "用电检查"

    def ready(self) -> None:
        from mmis.inspection import effects  # noqa: F401  (registers inspection.site_check)
        from mmis.readings.signals import site_check_requested

        site_check_requested.connect(_open_site_check, dispatch_uid="inspection.site_check")


def _open_site_check(sender, exception, actor, at, note="", **kwargs):
    from mmis.inspection.services import open_site_check

    return open_site_check(exception=exception, actor=actor, at=at, note=note)
