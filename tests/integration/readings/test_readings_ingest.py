"""The listener's ingestion without a broker: JSON, frames, intervals, acks, duplicates, dead letters,
and AMI billing readings made from the frozen value of the reading day."""

import json
from datetime import UTC, date, datetime

import pytest

from mmis.readings import dlt645
from mmis.readings import services as rs
from mmis.readings.ami import Incoming, Ingestor, parse
from mmis.readings.models import DailyFrozenReading, DeadLetter, IntervalReading, MeterReading

pytestmark = pytest.mark.django_db
AT = datetime(2026, 3, 26, 9, 0, tzinfo=UTC)


def msg(payload, topic="mmis/ami/T1/up"):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Incoming(topic, data, 1, 1, AT)


def test_intervals_frames_duplicates_late_data_and_dead_letters(world):
    m0, m1 = world.meters[0], world.meters[1]
    ing = Ingestor()
    frames = "".join(
        dlt645.to_hex(dlt645.build_reply(m1.comm_address, di, v))
        for di, v in [
            ("00010000", "100.50"),
            ("00010100", "10.00"),
            ("00020000", "0.00"),
            ("02010100", "220.0"),
        ]
    )
    batch = [
        msg(
            {
                "type": "frozen",
                "day": "2026-03-02",
                "meters": [{"addr": m0.comm_address, "total": "12.5", "flags": ["clock_error"]}],
            }
        ),
        msg(
            {"type": "frozen", "day": "2026-03-01", "meters": [{"addr": m0.comm_address, "total": "10"}]}
        ),  # late
        msg(
            {"type": "frozen", "day": "2026-03-02", "meters": [{"addr": m0.comm_address, "total": "12.5"}]}
        ),  # dup
        msg({"type": "frames", "day": "2026-03-02", "frames": frames}),
        msg(
            {
                "type": "interval",
                "meter": m0.comm_address,
                "start": "2026-03-02T00:00:00+08:00",
                "minutes": 15,
                "values": ["0.25", "0.30", "x"],
            }
        ),
        msg(b"\x00\xff garbage"),
        msg({"type": "nope"}),
    ]
    ing.handle(batch)
    assert ing.stats.stored == 5 and ing.stats.duplicates == 1 and ing.stats.dead_letters == 3
    f = DailyFrozenReading.objects.get(meter=m0, day=date(2026, 3, 2))
    assert f.flags == "clock_error" and f.metering_point_id == world.points[0].pk
    g = DailyFrozenReading.objects.get(meter=m1, day=date(2026, 3, 2))
    assert str(g.total) == "100.5000" and str(g.sharp) == "10.0000"
    assert [str(i.kwh) for i in IntervalReading.objects.order_by("start")] == ["0.2500", "0.3000"]
    reasons = " | ".join(DeadLetter.objects.values_list("reason", flat=True))
    assert "values[2]" in reasons and "DL/T 645" in reasons and "unknown message type" in reasons
    ing.handle([batch[4]])  # a redelivered interval message
    assert IntervalReading.objects.count() == 2 and ing.stats.duplicates == 3


def test_ack_finishes_a_command(world):
    from mmis.readings.models import RemoteCommand

    t = rs.register_terminal(
        actor=None,
        org=world.utility.stations[0],
        code="T1",
        kind="public_transformer",
        concentrator=True,
        meters=[world.meters[0]],
        at=AT,
    )
    cmd = rs.send_remote_command(meter=world.meters[0], command="read_now", requested_by=None, at=AT)
    sent = []
    rs.dispatch_commands(at=AT, publish=lambda topic, payload: sent.append((topic, payload)))
    assert sent[0][0] == "mmis/ami/T1/down" and sent[0][1]["command_id"] == cmd.request_id
    Ingestor().handle(
        [msg({"type": "ack", "command_id": cmd.request_id, "ok": False, "result": {"error": "busy"}})]
    )
    cmd.refresh_from_db()
    assert cmd.state == RemoteCommand.State.FAILED and cmd.result == {"error": "busy"} and t.pk


def test_automated_book_takes_the_frozen_value_of_the_reading_day(world):
    rs.update_book(actor=None, book=world.book, changes={"method": "automated"}, at=AT)
    m0 = world.meters[0]
    ing = Ingestor()
    ing.handle(
        [msg({"type": "frozen", "day": "2026-03-25", "meters": [{"addr": m0.comm_address, "total": "42"}]})]
    )
    r = MeterReading.objects.get(metering_point=world.points[0])
    assert r.source == "ami" and r.reading_date == date(2026, 3, 25) and r.status == "valid" and r.total == 42


def test_parse_rejects_bad_days_and_numbers():
    with pytest.raises(Exception, match="not a real date"):
        parse(b'{"type":"frozen","day":"2026-02-30","meters":[]}', received=AT)
    p = parse(
        b'{"type":"frozen","day":"2026-02-03","meters":[{"addr":"000000000001","total":"-1"}]}', received=AT
    )
    assert p.frozen == [] and "non-negative" in p.problems[0]


def test_batches_stored_out_of_order_are_acknowledged_in_order(world):
    from mmis.readings.ami import Listener

    listener = Listener(url="mqtt://127.0.0.1:1", client_id="mmis-test-order")
    acked = []
    listener.client = type("C", (), {"ack": lambda self, mid, qos: acked.append(mid)})()
    first = [Incoming("t", b"", 11, 1, AT), Incoming("t", b"", 12, 1, AT)]
    second = [Incoming("t", b"", 13, 1, AT), Incoming("t", b"", 14, 0, AT)]  # QoS 0: nothing to ack
    listener._acknowledge(1, second)  # the second writer finished first
    assert acked == []
    listener._acknowledge(0, first)
    assert acked == [11, 12, 13] and listener.next_ack == 2 and not listener.done
