from django.apps import AppConfig


class ReadingsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.readings"
    label = "readings"
    verbose_name = "抄表与采集"

    def ready(self) -> None:
        # registers the metering work order's effect handler (readings.meter_change)
        from mmis.readings import workorders  # noqa: F401
