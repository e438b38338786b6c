"""Use cases of inspection: the site-check work order opened from the reading audit."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.utils import timezone

from mmis.common.errors import FieldError, InvalidInput, NotFound
from mmis.inspection.definitions import SITE_CHECK, SPEC
from mmis.org.models import Org, User
from mmis.workflow import services as wf
from mmis.workflow.models import ProcessDefinition, ProcessInstance


class UnableToOpenSiteCheck(InvalidInput):
    pass


def install_definitions(
    *, actor: User | None, province: Org, at: datetime, effective_from: date
) -> ProcessDefinition:
    """Publish the site-check process for a province (left alone when the latest version has the
    same spec)."""
    latest = ProcessDefinition.objects.filter(org=province, code=SITE_CHECK).order_by("-version").first()
    if latest is not None and latest.spec == SPEC:
        return latest
    return wf.publish_definition(
        actor=actor,
        org=province,
        code=SITE_CHECK,
        name="抄表异常现场核查",
        spec=SPEC,
        effective_from=effective_from,
        at=at,
        category="inspection",
        number_prefix="JC",
    )


def open_site_check(*, exception: Any, actor: User, at: datetime, note: str = "") -> ProcessInstance:
    """Start the site-check work order of a reading exception (readings' ReadingException); its
    check task goes to the inspectors of the point's station."""
    point = exception.metering_point
    try:
        wf.resolve_definition(code=SITE_CHECK, org=exception.org, on=timezone.localtime(at).date())
    except NotFound:
        raise UnableToOpenSiteCheck(
            [FieldError("decision", f"no site-check process is published for {exception.org.name}")]
        ) from None
    return wf.start_process(
        actor=actor,
        code=SITE_CHECK,
        org=exception.org,
        title=f"现场核查 {point.point_no} {exception.get_rule_display()}",
        data={
            "point_no": point.point_no,
            "exception_id": exception.pk,
            "reading_date": exception.reading_date.isoformat(),
            "rule": exception.rule,
            "detail": exception.detail,
            "request": note,
        },
        at=at,
        subject_type="readings.readingexception",
        subject_id=str(exception.pk),
        subject_repr=f"{point.point_no} {exception.reading_date}",
    )
