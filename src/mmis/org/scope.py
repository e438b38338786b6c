"""Data scope: the org subtrees a user may see. Every query of business data goes through it."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from mmis.org.models import Org, User


@dataclass(frozen=True)
class DataScope:
    """A set of org-path prefixes; `everything` for superusers."""

    prefixes: tuple[str, ...]
    everything: bool = False
    _org_ids: list[int] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def for_user(cls, user: User) -> DataScope:
        if not user or not user.is_authenticated or not user.is_active:
            return cls(prefixes=())
        cached = getattr(user, "_data_scope", None)
        if cached is not None:
            return cached
        if user.is_superuser:
            scope = cls(prefixes=(), everything=True)
        else:
            paths = sorted(set(user.scope_grants.values_list("org__path", flat=True)))
            # drop paths already covered by a shorter granted prefix
            kept: list[str] = []
            for p in paths:
                if not any(p.startswith(k) for k in kept):
                    kept.append(p)
            scope = cls(prefixes=tuple(kept))
        user._data_scope = scope
        return scope

    def org_q(self, field_name: str = "path") -> Q:
        if self.everything:
            return Q()
        if not self.prefixes:
            return Q(pk__in=[])
        q = Q()
        for p in self.prefixes:
            q |= Q(**{f"{field_name}__startswith": p})
        return q

    def orgs(self) -> QuerySet[Org]:
        return Org.objects.filter(self.org_q())

    def org_ids(self) -> list[int]:
        if not self._org_ids:
            self._org_ids.extend(self.orgs().values_list("pk", flat=True))
        return self._org_ids

    def filter(self, qs: QuerySet, org_field: str = "org") -> QuerySet:
        """Rows whose `org_field` lies inside the scope (an org-id IN list: the org table is small)."""
        if self.everything:
            return qs
        return qs.filter(**{f"{org_field}_id__in": self.org_ids()})

    def contains_org(self, org: Org | None) -> bool:
        if org is None:
            return False
        return self.everything or any(org.path.startswith(p) for p in self.prefixes)


def scope_of(user: User) -> DataScope:
    return DataScope.for_user(user)


def chosen_org(orgs: QuerySet[Org], org_id: str, *, home_id: int | None) -> Org | None:
    """The org a settings page was asked for (`org_id` from the request) among `orgs`, the orgs
    the user may see; 404 when it is not one of them. Without `org_id`: the user's own org, else
    the first of `orgs` (None when there is none)."""
    from django.http import Http404

    if org_id:
        org = orgs.filter(pk=org_id).first() if org_id.isdigit() else None
        if org is None:
            raise Http404("单位不存在或不在您的数据权限范围内")
        return org
    return orgs.filter(pk=home_id).first() or orgs.first()
