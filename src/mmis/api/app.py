"""The one NinjaAPI: every app's router under /api/v1/, token or session auth, one error shape
`{"errors": [{"path": "…", "message": "…"}]}` for every failure."""

from __future__ import annotations

from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import APIKeyHeader, HttpBearer, SessionAuth

from mmis.common.errors import InvalidInput, NotFound
from mmis.org.services import user_for_token


class TokenAuth(HttpBearer):
    """`Authorization: Bearer mmis_…` (tokens issued per user; only their hash is stored)."""

    def authenticate(self, request, token):
        user = user_for_token(token)
        if user is not None:
            request.user = user
        return user


class TokenHeaderAuth(APIKeyHeader):
    param_name = "X-API-Token"

    def authenticate(self, request, key):
        user = user_for_token(key) if key else None
        if user is not None:
            request.user = user
        return user


class ActiveSessionAuth(SessionAuth):
    def authenticate(self, request, key):
        user = super().authenticate(request, key)
        return user if user is not None and user.is_active else None


api = NinjaAPI(
    title="MMIS API",
    version="1",
    description='电力营销管理信息系统 API. Errors share one shape: {"errors": [{"path", "message"}]}.',
    urls_namespace="api",
    docs_url="/docs",
    auth=[TokenAuth(), TokenHeaderAuth(), ActiveSessionAuth()],
)


def _errors(request, status: int, errors: list[dict]):
    return api.create_response(request, {"errors": errors}, status=status)


def _loc_to_path(loc: list) -> str:
    parts = list(loc)
    if parts and parts[0] in {"body", "query", "path", "form", "header", "cookie", "file"}:
        source = parts.pop(0)
        if source == "body" and parts and parts[0] == "payload":
            parts.pop(0)
    out = ""
    for p in parts:
        out = f"{out}[{p}]" if isinstance(p, int) else (f"{out}.{p}" if out else str(p))
    return out


@api.exception_handler(NinjaValidationError)
def on_validation_error(request, exc: NinjaValidationError):
    errors = []
    for e in exc.errors:
        msg = e.get("msg", "invalid")
        if e.get("type") == "missing":
            msg = "is required"
        errors.append({"path": _loc_to_path(e.get("loc", [])), "message": msg})
    return _errors(request, 422, errors or [{"path": "", "message": "invalid request"}])


@api.exception_handler(InvalidInput)
def on_invalid_input(request, exc: InvalidInput):
    return _errors(request, 422, [e.as_dict() for e in exc.errors])


@api.exception_handler(NotFound)
def on_not_found(request, exc: NotFound):
    return _errors(request, 404, [{"path": "", "message": str(exc)}])


@api.exception_handler(Http404)
def on_http404(request, exc):
    return _errors(request, 404, [{"path": "", "message": str(exc) or "not found"}])


@api.exception_handler(AuthenticationError)
def on_auth_error(request, exc):
    return _errors(request, 401, [{"path": "", "message": "sign in or send a valid API token"}])


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    return _errors(request, exc.status_code, [{"path": "", "message": str(exc)}])


OPTIONAL_APPS = [
    "workflow",
    "assets",
    "readings",
    "tariffs",
    "accounts",
    "billing",
    "services",
    "service_desk",
    "inspection",
    "losses",
    "control",
    "analytics",
    "portal",
]


def _register() -> None:
    from mmis.customers.api import router as customers_router
    from mmis.org.api import router as org_router

    api.add_router("/", org_router)
    api.add_router("/", customers_router)
    # Each app with an `api` module exposing `router` is mounted here; paths inside the router are
    # absolute below /api/v1/ (e.g. "/tariffs", "/bills/{id}").
    for module, prefix in [(f"mmis.{app}.api", "/") for app in OPTIONAL_APPS]:
        try:
            router = __import__(module, fromlist=["router"]).router
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        api.add_router(prefix, router)


_register()
