"""Effect handlers of the inspection processes (registered in InspectionConfig.ready)."""

from __future__ import annotations

from mmis.readings import services as readings
from mmis.workflow import effects
from mmis.workflow.effects import EffectContext


@effects.register("inspection.site_check")
def site_check(ctx: EffectContext) -> dict:
    """Hand the inspector's finding back to the reading audit (accept, correct or follow up)."""
    exc = readings.record_site_check_result(
        actor=ctx.actor,
        exception_id=int(ctx.data["exception_id"]),
        result=ctx.form["result"],
        actual_total=ctx.form.get("actual_total"),
        findings=ctx.form.get("findings", ""),
        at=ctx.at,
    )
    return {"check_result": exc.check_result}
