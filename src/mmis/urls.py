from django.conf.urls.i18n import i18n_patterns  # noqa: F401  (language prefix not used: cookie-based)
from django.urls import include, path

from mmis.api.urls import api

urlpatterns = [
    path("api/v1/", api.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("mmis.web.urls")),
]
