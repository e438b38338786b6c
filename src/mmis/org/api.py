"""API of the org app: who am I, the org tree in my scope."""

from __future__ import annotations

from ninja import Router, Schema

from mmis.common.errors import NotFound
from mmis.org.models import Org
from mmis.org.scope import DataScope

router = Router(tags=["org"])


class OrgOut(Schema):
    id: int
    code: str
    name: str
    level: str
    path: str
    depth: int
    parent_id: int | None


class MeOut(Schema):
    username: str
    display_name: str
    org: OrgOut | None
    roles: list[str]
    scope: list[OrgOut]


def _org_out(org: Org, parent_ids: dict[str, int] | None = None) -> dict:
    parent_path = org.path[: -org.steplen]
    parent_id = None
    if parent_path:
        parent_id = (parent_ids or {}).get(parent_path)
        if parent_id is None:
            parent_id = Org.objects.filter(path=parent_path).values_list("pk", flat=True).first()
    return {
        "id": org.pk,
        "code": org.code,
        "name": org.name,
        "level": org.level,
        "path": org.path,
        "depth": org.depth,
        "parent_id": parent_id,
    }


@router.get("/me", response=MeOut, summary="The signed-in user, roles and data scope")
def me(request):
    user = request.user
    scope = DataScope.for_user(user)
    roots = Org.get_root_nodes() if scope.everything else Org.objects.filter(path__in=scope.prefixes)
    return {
        "username": user.username,
        "display_name": user.display_name,
        "org": _org_out(user.org) if user.org else None,
        "roles": sorted(user.role_codes()),
        "scope": [_org_out(o) for o in roots],
    }


@router.get("/orgs", response=list[OrgOut], summary="Org tree nodes in my data scope, in tree order")
def list_orgs(request, level: str | None = None):
    qs = DataScope.for_user(request.user).orgs().order_by("path")
    if level:
        qs = qs.filter(level=level)
    orgs = list(qs)
    all_paths = {o.path: o.pk for o in Org.objects.only("path")}
    return [_org_out(o, all_paths) for o in orgs]


@router.get("/orgs/{org_id}", response=OrgOut, summary="One org node (404 outside my scope)")
def get_org(request, org_id: int):
    org = DataScope.for_user(request.user).orgs().filter(pk=org_id).first()
    if org is None:
        raise NotFound(f"org {org_id} not found")
    return _org_out(org)
