from django.urls import path

from mmis.workflow import views

app_name = "workflow"
urlpatterns = [
    path("", views.my_tasks, name="my_tasks"),
    path("queue/", views.team_queue, name="queue"),
    path("tasks/<int:pk>/claim/", views.claim, name="claim"),
    path("search/", views.search, name="search"),
    path("orders/<int:pk>/", views.order, name="order"),
    path("overdue/", views.overdue, name="overdue"),
]
