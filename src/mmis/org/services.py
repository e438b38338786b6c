"""Use cases of the org app: org nodes, users, roles, data-scope grants, API tokens. Each one is
atomic and writes its own audit record."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from mmis.common.errors import FieldError, InvalidInput
from mmis.org import audit
from mmis.org.models import ApiToken, DataScopeGrant, Org, Role, User

LEVEL_ORDER = [
    Org.Level.PROVINCE,
    Org.Level.CITY,
    Org.Level.COUNTY,
    Org.Level.STATION,
    Org.Level.SERVICE_HALL,
]


class UnableToCreateOrg(InvalidInput):
    pass


def create_org(*, parent: Org | None, code: str, name: str, level: str, actor: User | None = None) -> Org:
    errors = []
    if not code or len(code) > 20:
        errors.append(FieldError("code", "is required, at most 20 characters"))
    elif Org.objects.filter(code=code).exists():
        errors.append(FieldError("code", f"org code {code} is already used"))
    if not name or len(name) > 100:
        errors.append(FieldError("name", "is required, at most 100 characters"))
    if level not in Org.Level.values:
        errors.append(FieldError("level", f"unknown level {level!r}"))
    elif parent is None and level != Org.Level.PROVINCE:
        errors.append(FieldError("level", "a root org must be a province"))
    elif parent is not None and LEVEL_ORDER.index(level) <= LEVEL_ORDER.index(parent.level):
        errors.append(FieldError("level", f"a {level} cannot sit under a {parent.level}"))
    if errors:
        raise UnableToCreateOrg(errors)
    with transaction.atomic():
        if parent is None:
            org = Org.objects.add_root(create_kwargs={"code": code, "name": name, "level": level})
        else:
            org = Org.objects.add_child(
                Org.objects.get(pk=parent.pk), create_kwargs={"code": code, "name": name, "level": level}
            )
        audit.record(actor=actor, action="org.create", target=org, org=org, after=audit.snapshot(org))
    return org


def ensure_roles() -> dict[str, Role]:
    out = {}
    for code, label in Role.Code.choices:
        role, _ = Role.objects.get_or_create(code=code, defaults={"name": str(label)})
        out[code] = role
    return out


def create_user(
    *,
    username: str,
    password: str,
    org: Org,
    roles: list[str],
    display_name: str = "",
    scope_orgs: list[Org] | None = None,
    actor: User | None = None,
    check_password: bool = True,
) -> User:
    errors = []
    if not username or len(username) > 150:
        errors.append(FieldError("username", "is required, at most 150 characters"))
    elif User.objects.filter(username=username).exists():
        errors.append(FieldError("username", f"user name {username} is already taken"))
    unknown = sorted(set(roles) - set(Role.Code.values))
    if unknown:
        errors.append(FieldError("roles", f"unknown roles: {', '.join(unknown)}"))
    if check_password:
        try:
            validate_password(password)
        except ValidationError as exc:
            errors.append(FieldError("password", " ".join(exc.messages)))
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        role_rows = ensure_roles()
        user = User(username=username, org=org, display_name=display_name)
        user.set_password(password)
        user.save()
        user.roles.set([role_rows[r] for r in roles])
        for scope_org in scope_orgs if scope_orgs is not None else [org]:
            DataScopeGrant.objects.create(user=user, org=scope_org, granted_by=actor)
        audit.record(
            actor=actor,
            action="user.create",
            target=user,
            org=org,
            after={
                "username": username,
                "org": org.code,
                "roles": roles,
                "scope": [o.code for o in (scope_orgs if scope_orgs is not None else [org])],
            },
        )
    return user


def grant_scope(*, user: User, org: Org, actor: User) -> DataScopeGrant:
    with transaction.atomic():
        grant, created = DataScopeGrant.objects.get_or_create(
            user=user, org=org, defaults={"granted_by": actor}
        )
        if created:
            audit.record(actor=actor, action="scope.grant", target=user, org=org, after={"org": org.code})
    return grant


def revoke_scope(*, user: User, org: Org, actor: User) -> None:
    with transaction.atomic():
        deleted, _ = DataScopeGrant.objects.filter(user=user, org=org).delete()
        if deleted:
            audit.record(actor=actor, action="scope.revoke", target=user, org=org, before={"org": org.code})


def set_roles(*, user: User, roles: list[str], actor: User) -> None:
    unknown = sorted(set(roles) - set(Role.Code.values))
    if unknown:
        raise InvalidInput([FieldError("roles", f"unknown roles: {', '.join(unknown)}")])
    with transaction.atomic():
        before = sorted(user.roles.values_list("code", flat=True))
        rows = ensure_roles()
        user.roles.set([rows[r] for r in roles])
        audit.record(
            actor=actor,
            action="user.roles",
            target=user,
            before={"roles": before},
            after={"roles": sorted(roles)},
        )


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_api_token(
    *, user: User, name: str, actor: User | None = None, expires_at: datetime | None = None
) -> str:
    """Returns the token text once; only its hash is kept."""
    secret = "mmis_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        ApiToken.objects.create(
            user=user, name=name, prefix=secret[:12], secret_hash=_hash(secret), expires_at=expires_at
        )
        audit.record(actor=actor or user, action="token.issue", target=user, after={"name": name})
    return secret


# `last_used_at` is written at most this often per token (not on every request: a busy API
# client would otherwise turn each call into a row update and a commit).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def user_for_token(secret: str, *, at: datetime | None = None) -> User | None:
    at = at or timezone.now()
    token = (
        ApiToken.objects.select_related("user")
        .filter(secret_hash=_hash(secret), revoked_at__isnull=True)
        .first()
    )
    if token is None or (token.expires_at and token.expires_at <= at) or not token.user.is_active:
        return None
    if token.last_used_at is None or at - token.last_used_at >= LAST_USED_RESOLUTION:
        # conditional: of several requests racing past the check, one writes
        ApiToken.objects.filter(pk=token.pk).filter(
            models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lte=at - LAST_USED_RESOLUTION)
        ).update(last_used_at=at)
    return token.user
