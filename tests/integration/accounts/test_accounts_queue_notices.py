"""queue_notices (a bulk enqueue) leaves the outbox as one queue_notice per item would."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from mmis.accounts import notices
from mmis.accounts.models import Notice
from mmis.common.errors import InvalidInput

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 4, 4, 9, tzinfo=TZ)


def _item(n: int, **kw) -> notices.NoticeItem:
    return notices.NoticeItem(
        **{
            "channel": "sms",
            "recipient": f"1390000{n:04d}",
            "template": "payment.receipt",
            "payload": {"account_no": f"A{n}", "amount": "1.00", "receipt_no": f"R{n}"},
            "dedupe_key": f"test:{n}",
            **kw,
        }
    )


def _rows():
    return sorted(
        Notice.objects.values_list(
            "channel", "recipient", "template", "payload", "dedupe_key", "state", "org_id"
        )
    )


def test_bulk_enqueue_equals_one_by_one(utility, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.VAR_DIR = tmp_path
    org = utility.stations[0]
    items = [_item(n, org=org) for n in range(5)] + [_item(9, dedupe_key=None)]
    for it in items:
        notices.queue_notice(
            channel=it.channel,
            recipient=it.recipient,
            template=it.template,
            payload=it.payload,
            at=AT,
            org=it.org,
            dedupe_key=it.dedupe_key,
        )
    one_by_one = _rows()
    Notice.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert notices.queue_notices(items=items, at=AT) == 6
    assert _rows() == [(*r[:5], "sent", r[6]) for r in one_by_one]  # sent after commit
    assert len(callbacks) == 1
    assert len(list((tmp_path / "outbox").iterdir())) == 6


def test_bulk_enqueue_skips_keys_already_queued_and_repeated(utility):
    notices.queue_notices(items=[_item(1), _item(2)], at=AT)
    assert notices.queue_notices(items=[_item(2), _item(3), _item(3, recipient="x")], at=AT) == 1
    assert sorted(Notice.objects.values_list("dedupe_key", "recipient")) == [
        ("test:1", "13900000001"),
        ("test:2", "13900000002"),
        ("test:3", "13900000003"),
    ]


def test_bulk_enqueue_validates_every_item_first(utility):
    with pytest.raises(InvalidInput) as e:
        notices.queue_notices(items=[_item(1), _item(2, channel="fax"), _item(3, recipient="")], at=AT)
    assert [err.path for err in e.value.errors] == ["items[1].channel", "items[2].recipient"]
    assert Notice.objects.count() == 0


def test_bulk_dispatch_keeps_a_failed_notice_queued_with_its_reason(
    utility, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.NOTICE_SENDER = "flaky"

    def flaky(notice, text):
        if notice.recipient.endswith("2"):
            raise OSError("gateway timeout")

    monkeypatch.setitem(notices.SENDERS, "flaky", flaky)
    with django_capture_on_commit_callbacks(execute=True):
        notices.queue_notices(items=[_item(n) for n in range(1, 4)], at=AT)
    got = {n.dedupe_key: (n.state, n.attempts, n.last_error) for n in Notice.objects.all()}
    assert got == {
        "test:1": ("sent", 1, ""),
        "test:2": ("queued", 1, "gateway timeout"),  # retried by dispatch_queued
        "test:3": ("sent", 1, ""),
    }
    assert Notice.objects.get(dedupe_key="test:1").sent_at is not None
