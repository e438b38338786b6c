"""Pages of the tariff catalog under /tariffs/."""

from django.urls import path

from mmis.tariffs import views

app_name = "tariffs"

urlpatterns = [
    path("", views.tariff_list, name="list"),
    path("compare/", views.compare, name="compare"),
    path("export.json", views.export_json, name="export_json"),
    path("export.xlsx", views.export_xlsx, name="export_xlsx"),
    path("import/", views.import_page, name="import"),
    path("<int:pk>/", views.tariff_detail, name="detail"),
    path("<int:pk>/versions/new/", views.version_new, name="version_new"),
    path("versions/<int:pk>/", views.version_detail, name="version"),
    path("versions/<int:pk>/edit/", views.version_edit, name="version_edit"),
    path("versions/<int:pk>/publish/", views.version_publish, name="version_publish"),
    path("versions/<int:pk>/discard/", views.version_discard, name="version_discard"),
    path("versions/<int:pk>/try/", views.version_try, name="version_try"),
]
