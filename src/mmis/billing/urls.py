from django.urls import path

from mmis.billing import views

app_name = "billing"

urlpatterns = [
    path("", views.runs, name="runs"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/progress/", views.run_progress, name="run_progress"),
    path("runs/<int:pk>/export.xlsx", views.run_excel, name="run_excel"),
    path("runs/<int:pk>/<slug:action>/", views.run_action, name="run_action"),
    path("audit/", views.audit_queue, name="audit_queue"),
    path("audit-rules/", views.audit_rules, name="audit_rules"),
    path("bills/<int:pk>/", views.bill_detail, name="bill"),
    path("bills/<int:pk>/pdf/", views.bill_pdf, name="bill_pdf"),
    path("corrections/", views.corrections, name="corrections"),
]
