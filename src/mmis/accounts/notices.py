"""Outbox of customer notices (SMS / e-bill). Queue inside the business transaction; the sender
runs after commit (`transaction.on_commit`), so a rolled-back transaction sends nothing.

Sender by `settings.NOTICE_SENDER`: "file" writes one JSON file per notice to VAR_DIR/outbox/,
"console" logs it. Billing reuses `queue_notice` (one bill) and `queue_notices` (a release, in bulk)
for bill notices.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True, slots=True)
class NoticeItem:
    """One notice of a bulk enqueue (`queue_notices`), the arguments of `queue_notice`."""

    channel: str
    recipient: str
    template: str
    payload: dict
    org: Any = None
    account: Any = None
    dedupe_key: str | None = None


def queue_notices(*, items: Sequence[NoticeItem], at: datetime, batch_size: int = 1000) -> int:
    """Queue many notices set-based (one lookup of the dedupe keys already queued, then bulk
    inserts): the same outbox rows as one `queue_notice` per item, sent after the surrounding
    transaction commits. Every item is validated first (nothing is queued if one is invalid);
    an item whose `dedupe_key` is already queued (or repeated in `items`) is skipped. Returns the
    number of notices queued."""
    errors = []
    for i, it in enumerate(items):
        if it.channel not in Notice.ChannelKind.values:
            errors.append(FieldError(f"items[{i}].channel", f"unknown channel {it.channel!r}"))
        if not it.recipient:
            errors.append(FieldError(f"items[{i}].recipient", "is required"))
        if not it.template:
            errors.append(FieldError(f"items[{i}].template", "is required"))
    if errors:
        raise InvalidInput(errors)
    keys = [it.dedupe_key for it in items if it.dedupe_key]
    taken: set[str] = set()
    for i in range(0, len(keys), batch_size):
        taken.update(
            Notice.objects.filter(dedupe_key__in=keys[i : i + batch_size]).values_list(
                "dedupe_key", flat=True
            )
        )
    rows = []
    for it in items:
        if it.dedupe_key:
            if it.dedupe_key in taken:
                continue
            taken.add(it.dedupe_key)
        rows.append(
            Notice(
                org=it.org,
                account=it.account,
                channel=it.channel,
                recipient=it.recipient[:200],
                template=it.template,
                payload=it.payload,
                created_at=at,
                dedupe_key=it.dedupe_key or None,
            )
        )
    if not rows:
        return 0
    try:
        with transaction.atomic():
            created = Notice.objects.bulk_create(rows, batch_size=batch_size)
    except IntegrityError:  # a key queued meanwhile by another transaction: one by one
        for it in items:
            queue_notice(
                channel=it.channel,
                recipient=it.recipient,
                template=it.template,
                payload=it.payload,
                at=at,
                org=it.org,
                account=it.account,
                dedupe_key=it.dedupe_key,
            )
        return len(rows)
    ids = [n.pk for n in created]  # PostgreSQL and SQLite ≥ 3.35 return the ids of a bulk insert
    transaction.on_commit(lambda: _dispatch_many(ids))
    return len(rows)


def _dispatch_many(ids: list[int], *, max_attempts: int = 3, batch_size: int = 1000) -> None:
    """`dispatch` of many queued notices: read in batches, each sent by the configured sender; the
    sent ones marked in one update per batch, a failure kept with its reason."""
    from django.db.models import F

    sender = SENDERS.get(getattr(settings, "NOTICE_SENDER", "file"), _send_file)
    for i in range(0, len(ids), batch_size):
        sent = []
        for notice in Notice.objects.filter(pk__in=ids[i : i + batch_size]).exclude(state=Notice.State.SENT):
            try:
                sender(notice, render(notice.template, notice.payload))
            except Exception as exc:  # a sender failure must never break the business transaction
                attempts = notice.attempts + 1
                Notice.objects.filter(pk=notice.pk).update(
                    attempts=attempts,
                    last_error=str(exc)[:300],
                    state=Notice.State.FAILED if attempts >= max_attempts else Notice.State.QUEUED,
                )
            else:
                sent.append(notice.pk)
        Notice.objects.filter(pk__in=sent).update(
            state=Notice.State.SENT, sent_at=timezone.now(), attempts=F("attempts") + 1
        )


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
