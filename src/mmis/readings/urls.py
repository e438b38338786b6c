from django.urls import path

from mmis.readings import views

app_name = "readings"
urlpatterns = [
    path("", views.home, name="home"),
    path("plans/", views.generate_plans, name="generate_plans"),
    path("books/<int:pk>/", views.book_detail, name="book"),
    path("books/<int:pk>/route/", views.route, name="route"),
    path("books/<int:pk>/route/<int:point_id>/", views.route_entry, name="route_entry"),
    path("books/<int:pk>/bulk/", views.bulk_entry, name="bulk"),
    path("import/", views.import_page, name="import"),
    path("exceptions/", views.exceptions_queue, name="exceptions"),
    path("exceptions/<int:pk>/decide/", views.decide, name="decide"),
    path("exceptions/<int:pk>/assign/", views.assign, name="assign"),
    path("points/<int:pk>/", views.point_detail, name="point"),
    path("settings/", views.vee_settings, name="settings"),
    path("terminals/", views.terminals, name="terminals"),
    path("commands/", views.commands, name="commands"),
]
