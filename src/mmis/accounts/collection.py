"""Arrears work and cost control: daily late-fee accrual, the dunning ladder, disconnection
orders, prepaid (远程费控) daily estimates, alarms, remote disconnection and reconnection, and
IC-card vends. Every function takes `on` / `at`: no clock inside."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import transaction

from mmis.accounts import notices, queries, rules, services
from mmis.accounts.models import (
    CardVend,
    CostControlCommand,
    DisconnectionOrder,
    DunningAction,
    LateFeeAccrual,
    LedgerEntry,
    Payment,
    PrepaidAccount,
    PrepaidEstimate,
)
from mmis.common.errors import InvalidInput
from mmis.common.money import ZERO, money_str, round_fen
from mmis.customers.models import Account
from mmis.org import audit

log = logging.getLogger("mmis.accounts")

DEFAULT_LADDER = [
    {"code": "reminder", "after_days": 1, "channel": "sms"},
    {"code": "notice", "after_days": 15, "channel": "sms"},
    {"code": "disconnection_notice", "after_days": 30, "channel": "sms"},
    {"code": "disconnection_order", "after_days": 37},
]
NOTICE_LEAD_DAYS = 3  # a disconnection notice at least 3 days before the order (1996 Art. 67: 3–7)


# --- late fees ----------------------------------------------------------------------------------
def accrue_late_fees(*, on: date, org=None) -> int:
    """Snapshot of the fee accrued on every open overdue debt as of `on` (mmis.rating.late_fee,
    the same function as `python -m mmis late-fee`); the fee is charged when the debt is paid."""
    rows = queries.arrears(None, on=on, org=org, min_days=1)
    ids = [r.account_id for r in rows]
    out = []
    for acc_id in ids:
        for item in queries.open_items(acc_id, on=on):
            if item.entry.kind == "late_fee" or item.days_overdue <= 0:
                continue
            out.append(
                LateFeeAccrual(
                    debt=item.entry,
                    account_id=acc_id,
                    org_id=item.entry.org_id,
                    as_of=on,
                    principal=item.open,
                    days=item.days_overdue,
                    amount=item.accrued_fee,
                )
            )
    LateFeeAccrual.objects.bulk_create(out, ignore_conflicts=True, batch_size=2000)
    return len(out)


# --- dunning ------------------------------------------------------------------------------------
def _sms(acc: Account, *, template: str, payload: dict, at: datetime) -> None:
    """A cost-control SMS to the customer; a customer without a phone on file gets none (the state
    still moves on: a missing phone must not refuse the top-up that triggered it)."""
    phone = _phone(acc)
    if phone:
        notices.queue_notice(
            channel="sms",
            recipient=phone,
            template=template,
            payload=payload,
            at=at,
            org=acc.org,
            account=acc,
        )


def _phone(account: Account) -> str:
    from mmis.customers.crypto import cipher

    try:
        return cipher().decrypt(account.customer.phone_enc) or account.customer.phone_mask
    except Exception:  # an unreadable phone must not stop the ladder
        return account.customer.phone_mask


def run_dunning(
    *, on: date, at: datetime, org=None, account_ids: list[int] | None = None, actor=None
) -> dict:
    """Take every rung of the org's ladder that is due for each overdue debt, once per debt and
    rung. Accounts with an approved instalment plan or deferral are skipped. A disconnection work
    order needs more than `disconnect_min_overdue_days` overdue and a disconnection notice sent at
    least 3 days before."""
    rows = queries.arrears(None, on=on, org=org, min_days=1)
    if account_ids is not None:
        wanted = set(account_ids)
        rows = [r for r in rows if r.account_id in wanted]
    counts: dict[str, int] = {"skipped_plan": 0}
    cancelled = _cancel_settled_orders(rows, at=at, org=org, account_ids=account_ids, actor=actor)
    if cancelled:
        counts["orders_cancelled"] = cancelled
    for r in rows:
        if r.on_plan:
            counts["skipped_plan"] += 1
            continue
        acc = Account.objects.select_related("customer", "org").get(pk=r.account_id)
        pol = services.policy_for(acc.org)
        if r.total < pol.dunning_min_amount:
            continue
        ladder = pol.dunning_ladder or DEFAULT_LADDER
        with transaction.atomic():
            for item in queries.open_items(acc, on=on):
                if item.entry.kind == "late_fee" or item.days_overdue < 1:
                    continue
                done = set(DunningAction.objects.filter(debt=item.entry).values_list("step", flat=True))
                for step in sorted(ladder, key=lambda s: s["after_days"]):
                    code = step["code"]
                    if code in done or item.days_overdue < int(step["after_days"]):
                        continue
                    if code == "disconnection_order":
                        notice = DunningAction.objects.filter(
                            debt=item.entry, step="disconnection_notice"
                        ).first()
                        if item.days_overdue <= pol.disconnect_min_overdue_days or notice is None:
                            continue
                        if (at - notice.at) < timedelta(days=NOTICE_LEAD_DAYS):
                            continue
                        if not DisconnectionOrder.objects.filter(account=acc, state="open").exists():
                            DisconnectionOrder.objects.create(
                                org_id=acc.org_id,
                                account=acc,
                                arrears=r.total,
                                created_at=at,
                                reason=f"欠费{money_str(r.total)}元，逾期{item.days_overdue}天",
                            )
                        DunningAction.objects.create(
                            org_id=acc.org_id,
                            account=acc,
                            debt=item.entry,
                            step=code,
                            at=at,
                            amount=item.open,
                        )
                    else:
                        channel = step.get("channel", "sms")
                        recipient = acc.ebill_email if channel == "ebill" else _phone(acc)
                        n = None
                        if recipient:
                            n = notices.queue_notice(
                                channel=channel,
                                recipient=recipient,
                                template=f"dunning.{code}",
                                payload={
                                    "name": acc.name,
                                    "account_no": acc.account_no,
                                    "amount": money_str(r.total),
                                    "days": item.days_overdue,
                                    "deadline": (on + timedelta(days=7)).isoformat(),
                                },
                                at=at,
                                org=acc.org,
                                account=acc,
                                dedupe_key=f"dun:{item.entry.pk}:{code}",
                            )
                        DunningAction.objects.create(
                            org_id=acc.org_id,
                            account=acc,
                            debt=item.entry,
                            step=code,
                            at=at,
                            amount=item.open,
                            notice=n,
                        )
                    counts[code] = counts.get(code, 0) + 1
                    done.add(code)
    return counts


def _cancel_settled_orders(rows, *, at: datetime, org, account_ids, actor) -> int:
    """Open disconnection orders of accounts that paid their arrears (or were granted an instalment
    plan or deferral) since the order was made: cancelled, so no crew cuts a customer who has
    paid. `rows`: the overdue accounts now."""
    still_due = {r.account_id for r in rows if not r.on_plan}
    orders = DisconnectionOrder.objects.filter(state=DisconnectionOrder.State.OPEN)
    if org is not None:
        orders = orders.filter(org__path__startswith=org.path)
    if account_ids is not None:
        orders = orders.filter(account_id__in=account_ids)
    n = 0
    for order in orders.exclude(account_id__in=still_due).select_related("account"):
        with transaction.atomic():
            changed = DisconnectionOrder.objects.filter(
                pk=order.pk, state=DisconnectionOrder.State.OPEN
            ).update(state=DisconnectionOrder.State.CANCELLED, closed_at=at)
            if changed:
                audit.record(
                    actor=actor,
                    action="disconnection_order.cancelled",
                    target=order,
                    reason="欠费已结清或已批准分期/缓缴",
                    at=at,
                )
                n += 1
    return n


# --- prepaid / remote cost control --------------------------------------------------------------
def enroll_prepaid(
    *, account: Account, at: datetime, mode: str = "remote", price: Decimal | None = None, actor=None
) -> PrepaidAccount:
    pp, _ = PrepaidAccount.objects.get_or_create(
        account=account,
        defaults={"org_id": account.org_id, "mode": mode, **({"price": price} if price else {})},
    )
    return pp


def available(prepaid: PrepaidAccount) -> Decimal:
    """Prepaid balance = held credit − owed − unsettled daily estimates (DOMAIN §5.6)."""
    est = sum(
        PrepaidEstimate.objects.filter(prepaid=prepaid, settled=False).values_list("amount", flat=True), ZERO
    )
    return -queries.balance(prepaid.account_id) - est


def record_estimate(
    *, prepaid: PrepaidAccount, day: date, kwh: Decimal, at: datetime, price: Decimal | None = None
) -> PrepaidEstimate:
    """One day's estimated charge (kWh × price, rounded to the fen); once per day."""
    if kwh < 0:
        raise InvalidInput(path="kwh", errors="must not be negative")
    p = price if price is not None else prepaid.price
    est, _ = PrepaidEstimate.objects.get_or_create(
        prepaid=prepaid, day=day, defaults={"kwh": kwh, "price": p, "amount": round_fen(kwh * p)}
    )
    PrepaidAccount.objects.filter(pk=prepaid.pk).update(last_estimate_day=day)
    evaluate(prepaid=PrepaidAccount.objects.get(pk=prepaid.pk), at=at)
    return est


def run_daily_estimates(*, day: date, at: datetime) -> int:
    """Estimate `day` for every remote prepaid account from its points' daily frozen readings
    (mmis.readings.queries.daily_frozen: the register at the start of `day` and of the next day)."""
    try:
        from mmis.readings.queries import daily_frozen
    except ImportError:  # readings not installed in this build
        return 0
    n = 0
    for pp in PrepaidAccount.objects.filter(mode="remote").select_related("account"):
        points = list(pp.account.metering_points.values_list("pk", "multiplier"))
        frozen = daily_frozen(point_ids=[p for p, _m in points], start=day, end=day + timedelta(days=2))
        kwh = ZERO
        for pk, mult in points:
            days = {f.day: f for f in frozen.get(pk, [])}
            a, b = days.get(day), days.get(day + timedelta(days=1))
            if a is not None and b is not None and a.total is not None and b.total is not None:
                kwh += max(Decimal(b.total) - Decimal(a.total), ZERO) * Decimal(mult)
        if points:
            record_estimate(prepaid=pp, day=day, kwh=kwh, at=at)
            n += 1
    return n


def settle_estimates(*, prepaid: PrepaidAccount, before: date) -> int:
    """The monthly bill replaces the estimates of its period."""
    return PrepaidEstimate.objects.filter(prepaid=prepaid, day__lt=before, settled=False).update(settled=True)


def evaluate(*, prepaid: PrepaidAccount, at: datetime) -> PrepaidAccount:
    """Move the cost-control state on: alarms with notices, disconnection after the grace period,
    reconnection after a top-up (due within `reconnect_within_hours`)."""
    with transaction.atomic():
        pp = (
            PrepaidAccount.objects.select_for_update()
            .select_related("account", "account__customer")
            .get(pk=prepaid.pk)
        )
        pol = services.policy_for(pp.account.org)
        bal = available(pp)
        level = rules.prepaid_state(
            available=bal, threshold1=pol.prepaid_threshold1, threshold2=pol.prepaid_threshold2
        )
        acc = pp.account
        payload = {"account_no": acc.account_no, "balance": money_str(bal), "grace": pol.prepaid_grace_hours}
        if pp.state == PrepaidAccount.State.DISCONNECTED:
            if bal >= pol.reconnect_threshold:
                _command(
                    pp,
                    "reconnect",
                    "充值后自动复电",
                    at,
                    due_by=at + timedelta(hours=pol.reconnect_within_hours),
                )
                pp.state = level
                pp.negative_since = None
                _sms(acc, template="prepaid.reconnect", payload=payload, at=at)
        elif level == "negative":
            if pp.negative_since is None:
                pp.negative_since = at
                _sms(acc, template="prepaid.negative", payload=payload, at=at)
            pp.state = PrepaidAccount.State.NEGATIVE
            if at - pp.negative_since >= timedelta(hours=pol.prepaid_grace_hours):
                _command(pp, "disconnect", f"预付费欠费{money_str(bal)}元超过宽限期", at)
                pp.state = PrepaidAccount.State.DISCONNECTED
        else:
            order = ["normal", "alarm1", "alarm2"]
            if level in ("alarm1", "alarm2") and order.index(level) > order.index(
                pp.state if pp.state in order else "normal"
            ):
                thr = pol.prepaid_threshold1 if level == "alarm1" else pol.prepaid_threshold2
                _sms(
                    acc, template=f"prepaid.{level}", payload={**payload, "threshold": money_str(thr)}, at=at
                )
            pp.state = level
            pp.negative_since = None
        pp.save(update_fields=["state", "negative_since"])
    return pp


def _command(pp: PrepaidAccount, command: str, reason: str, at: datetime, due_by=None) -> CostControlCommand:
    """Send through the AMI command channel (mmis.readings.services.send_remote_command) when it
    and a meter behind a terminal exist; otherwise keep the intent as `requested` for an operator."""
    from mmis.assets.models import Meter

    meter = Meter.objects.filter(metering_point__account_id=pp.account_id).first()
    cmd = CostControlCommand(
        org_id=pp.org_id,
        account_id=pp.account_id,
        meter_id=meter.pk if meter else None,
        command=command,
        reason=reason,
        requested_at=at,
        due_by=due_by,
    )
    if meter is None:
        cmd.error = "no meter installed on the account"
    else:
        try:
            from mmis.readings.services import send_remote_command
        except ImportError:
            send_remote_command = None
        if send_remote_command is None:
            cmd.error = "the AMI command channel is not installed"
        else:
            try:
                with transaction.atomic():
                    sent = send_remote_command(
                        meter=meter, command=command, requested_by=None, at=at, reason=reason
                    )
                cmd.state = CostControlCommand.State.SENT
                cmd.external_id = str(getattr(sent, "pk", ""))
            except InvalidInput as exc:
                cmd.state = CostControlCommand.State.FAILED
                cmd.error = str(exc)[:300]
    cmd.save()
    return cmd


def after_payment(*, account_id: int, at: datetime) -> None:
    """Called by take_payment: a top-up of a prepaid account moves its cost-control state on."""
    pp = PrepaidAccount.objects.filter(account_id=account_id).first()
    if pp is not None:
        evaluate(prepaid=pp, at=at)


def vend_card(
    *,
    account: Account,
    amount,
    card_no: str,
    sequence: int,
    at: datetime,
    actor,
    session=None,
    channel: str = "cash",
    kwh: Decimal = ZERO,
) -> CardVend:
    """IC-card purchase (售电) for a card meter: a payment plus the card write record (sequence
    numbers are unique per account, so a vend cannot be written twice)."""
    if CardVend.objects.filter(account=account, sequence=sequence).exists():
        raise InvalidInput(path="sequence", errors=f"card sequence {sequence} was already vended")
    with transaction.atomic():
        pay: Payment = services.take_payment(
            account=account,
            amount=amount,
            channel=channel,
            at=at,
            actor=actor,
            session=session,
            reference=card_no,
        )
        return CardVend.objects.create(
            account=account,
            payment=pay,
            card_no=card_no,
            sequence=sequence,
            amount=pay.amount,
            kwh=kwh,
            vended_at=at,
        )


def ledger_entries_for_statement(account: Account) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(account=account).order_by("posted_at", "id"))
