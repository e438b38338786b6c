"""Outbox of customer notices (SMS / e-bill). Queue inside the business transaction; the sender
runs after commit (`transaction.on_commit`), so a rolled-back transaction sends nothing.

Sender by `settings.NOTICE_SENDER`: "file" writes one JSON file per notice to VAR_DIR/outbox/,
"console" logs it. Billing reuses `queue_notice` for bill notices.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from mmis.accounts.models import Notice
from mmis.common.errors import FieldError, InvalidInput

log = logging.getLogger("mmis.notices")

TEMPLATES = {
    "dunning.reminder": "【供电公司】尊敬的{name}，您的户号{account_no}电费{amount}元已逾期，请及时缴纳。",
    "dunning.notice": "【供电公司】催费通知：户号{account_no}欠费{amount}元，逾期{days}天，"
    "请尽快缴纳以免产生更多违约金。",
    "dunning.disconnection_notice": "【供电公司】停电通知：户号{account_no}欠费{amount}元已逾期{days}天，"
    "如在{deadline}前仍未缴清，将依法停止供电。",
    "prepaid.alarm1": "【供电公司】户号{account_no}预付电费余额{balance}元，"
    "已低于{threshold}元，请及时充值。",
    "prepaid.alarm2": "【供电公司】户号{account_no}预付电费余额{balance}元，"
    "已低于{threshold}元，请尽快充值。",
    "prepaid.negative": "【供电公司】户号{account_no}预付电费已欠费{balance}元，"
    "{grace}小时内未充值将远程停电。",
    "prepaid.reconnect": "【供电公司】户号{account_no}已充值，复电指令已下发。",
    "payment.receipt": "【供电公司】户号{account_no}缴费{amount}元成功，收据号{receipt_no}。",
}


def render(template: str, payload: dict) -> str:
    text = TEMPLATES.get(template)
    if text is None:
        return f"{template}: {json.dumps(payload, ensure_ascii=False)}"
    try:
        return text.format(**payload)
    except (KeyError, IndexError):
        return f"{text} {json.dumps(payload, ensure_ascii=False)}"


def queue_notice(
    *,
    channel: str,
    recipient: str,
    template: str,
    payload: dict,
    at: datetime,
    org=None,
    account=None,
    dedupe_key: str | None = None,
) -> Notice:
    """Queue a notice; sent after the surrounding transaction commits. With `dedupe_key` a notice
    already queued under that key is returned instead of a second one."""
    errors = []
    if channel not in Notice.ChannelKind.values:
        errors.append(FieldError("channel", f"unknown channel {channel!r}"))
    if not recipient:
        errors.append(FieldError("recipient", "is required"))
    if not template:
        errors.append(FieldError("template", "is required"))
    if errors:
        raise InvalidInput(errors)
    if dedupe_key:
        found = Notice.objects.filter(dedupe_key=dedupe_key).first()
        if found is not None:
            return found
    try:
        with transaction.atomic():
            notice = Notice.objects.create(
                org=org,
                account=account,
                channel=channel,
                recipient=recipient[:200],
                template=template,
                payload=payload,
                created_at=at,
                dedupe_key=dedupe_key,
            )
    except IntegrityError:
        return Notice.objects.get(dedupe_key=dedupe_key)
    transaction.on_commit(lambda: dispatch(notice.pk))
    return notice


def _send_file(notice: Notice, text: str) -> None:
    out = Path(settings.VAR_DIR) / "outbox"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{notice.pk:08d}-{notice.channel}-{notice.template}.json").write_text(
        json.dumps(
            {
                "id": notice.pk,
                "channel": notice.channel,
                "to": notice.recipient,
                "template": notice.template,
                "text": text,
                "payload": notice.payload,
            },
            ensure_ascii=False,
            indent=1,
            default=str,
        ),
        encoding="utf-8",
    )


def _send_console(notice: Notice, text: str) -> None:
    log.warning("notice %s to %s: %s", notice.channel, notice.recipient, text)


SENDERS = {"file": _send_file, "console": _send_console}


def dispatch(notice_id: int, *, max_attempts: int = 3) -> Notice:
    """Send one queued notice with the configured sender; failures are kept with their reason."""
    notice = Notice.objects.get(pk=notice_id)
    if notice.state == Notice.State.SENT:
        return notice
    sender = SENDERS.get(getattr(settings, "NOTICE_SENDER", "file"), _send_file)
    notice.attempts += 1
    try:
        sender(notice, render(notice.template, notice.payload))
    except Exception as exc:  # a sender failure must never break the business transaction
        notice.last_error = str(exc)[:300]
        notice.state = Notice.State.FAILED if notice.attempts >= max_attempts else Notice.State.QUEUED
    else:
        notice.state = Notice.State.SENT
        notice.sent_at = timezone.now()
    notice.save(update_fields=["attempts", "last_error", "state", "sent_at"])
    return notice


def dispatch_queued(*, limit: int = 1000) -> int:
    """Retry what is still queued (a worker or cron calls this)."""
    n = 0
    for pk in Notice.objects.filter(state=Notice.State.QUEUED).values_list("pk", flat=True)[:limit]:
        dispatch(pk)
        n += 1
    return n
