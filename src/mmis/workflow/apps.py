from django.apps import AppConfig


class WorkflowConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mmis.workflow"
    label = "workflow"
    verbose_name = "工单流程"
