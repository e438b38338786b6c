"""URLs: the API under /api/v1/, the web shell at /, and each app's pages under /<app>/ when the
app has a `urls` module (with `app_name` = the app label)."""

from importlib import import_module

from django.urls import include, path

from mmis.api.urls import api

APP_PAGES = [
    "tariffs",
    "readings",
    "billing",
    "accounts",
    "workflow",
    "services",
    "service_desk",
    "inspection",
    "losses",
    "control",
    "analytics",
    "portal",
]


def _app_urls() -> list:
    out = []
    for app in APP_PAGES:
        module_name = f"mmis.{app}.urls"
        try:
            module = import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        out.append(path(f"{app.replace('_', '-')}/", include(module)))
    return out


urlpatterns = [
    path("api/v1/", api.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    *_app_urls(),
    path("", include("mmis.web.urls")),
]
