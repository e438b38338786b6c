from django.urls import path

from mmis.services import views

app_name = "services"
urlpatterns = [
    path("", views.index, name="index"),
    path("start/<str:code>/", views.start, name="start"),
    path("compliance/", views.compliance, name="compliance"),
    path("contracts/", views.contract_list, name="contracts"),
    path("contracts/<int:pk>/pdf/", views.contract_pdf, name="contract_pdf"),
]
