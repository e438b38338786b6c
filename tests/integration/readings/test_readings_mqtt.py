"""AMI end to end against real Mosquitto brokers: the local one (127.0.0.1:1883) and, for the
restart test, a private broker started on a free port with persistence."""

import shutil
import socket
import subprocess
import threading
import time
import uuid
from datetime import date

import pytest
from django.utils import timezone

from mmis.readings import services as rs
from mmis.readings.ami import Listener
from mmis.readings.models import DailyFrozenReading, DeadLetter, RemoteCommand
from mmis.readings.simulator import Simulator, address, register_in_db, registers

pytestmark = [pytest.mark.django_db, pytest.mark.mqtt]
LOCAL = "mqtt://127.0.0.1:1883"


def _broker_up(host="127.0.0.1", port=1883) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


needs_broker = pytest.mark.skipif(not _broker_up(), reason="no Mosquitto on 127.0.0.1:1883")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _publish_when_ready(listener, sim_kwargs, *, extra=(), delay=0.5, repeat=1):
    out = {}

    def go():
        listener.connected.wait(10)
        time.sleep(delay)  # let the SUBACK arrive
        sim = Simulator(**sim_kwargs)
        sim.connect()
        for _ in range(repeat):
            sim.result.readings = 0
            sim.acked = 0
            sim._published = 0
            out["result"] = sim.publish_all(extra=list(extra))
        sim.close()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, out


@needs_broker
def test_terminals_to_stored_rows_with_frames_bad_input_and_duplicates(utility):
    prefix = f"T{uuid.uuid4().hex[:5]}"
    register_in_db(terminals=3, meters_per_terminal=40, prefix=prefix, org=utility.stations[0])
    listener = Listener(url=LOCAL, client_id=f"mmis-test-{prefix}", batch_seconds=0.1, writers=0)
    bad = [
        (f"mmis/ami/{prefix}X/up", b"{broken"),
        (f"mmis/ami/{prefix}X/up", b"6812"),
        (f"mmis/ami/{prefix}X/up", b'{"type":"frozen","day":"2026-02-30","meters":[]}'),
        (
            f"mmis/ami/{prefix}X/up",
            b'{"type":"frozen","day":"2026-03-01","meters":[{"addr":"999999999999",'
            b'"total":"1"},{"addr":"123","total":"-1"}]}',
        ),
    ]
    thread, out = _publish_when_ready(
        listener,
        dict(
            url=LOCAL,
            terminals=3,
            meters_per_terminal=40,
            days=4,
            last_day=date(2026, 3, 4),
            prefix=prefix,
            frames_every=2,
        ),
        extra=bad,
        repeat=2,  # everything twice: duplicates are ignored
    )
    try:
        stats = listener.run(idle_exit=2.5, max_seconds=60)
    finally:
        listener.forget_session()
    thread.join(5)
    assert out["result"].messages == 3 * 4 + len(bad)
    assert DailyFrozenReading.objects.count() == 3 * 40 * 4
    assert stats.stored == 480 and stats.duplicates == 480
    # raw DL/T 645 frames (terminal 0 and 2) decode to the same registers as JSON
    from mmis.assets.models import Meter

    m = Meter.objects.get(comm_address=address(2, 7))
    f = DailyFrozenReading.objects.get(meter=m, day=date(2026, 3, 2))
    expected = registers(2, 7, date(2026, 3, 2))
    assert format(f.total, "f").rstrip("0").rstrip(".") == expected["total"].rstrip("0").rstrip(".")
    assert f.valley is not None and f.reactive is not None
    reasons = list(
        DeadLetter.objects.filter(topic__startswith=f"mmis/ami/{prefix}X").values_list("reason", flat=True)
    )
    assert len(reasons) == 2 * len(bad)
    assert any("malformed JSON" in r for r in reasons) and any("DL/T 645" in r for r in reasons)
    assert any("2026-02-30" in r for r in reasons) and any(
        "unknown meters: 999999999999" in r for r in reasons
    )


@needs_broker
def test_remote_commands_are_acknowledged_or_time_out(utility):
    prefix = f"C{uuid.uuid4().hex[:5]}"
    register_in_db(terminals=1, meters_per_terminal=3, prefix=prefix, org=utility.stations[0])
    from mmis.assets.models import Meter

    meter = Meter.objects.get(comm_address=address(0, 1))
    now = timezone.now()
    cmd = rs.send_remote_command(meter=meter, command="read_now", requested_by=None, at=now)
    cut = rs.send_remote_command(
        meter=meter, command="disconnect", requested_by=None, at=now, reason="欠费停电"
    )
    listener = Listener(url=LOCAL, client_id=f"mmis-test-{prefix}", writers=0)
    sim = Simulator(url=LOCAL, terminals=1, meters_per_terminal=3, days=1, prefix=prefix)
    sim.connect()
    try:
        listener.run(
            max_seconds=20,
            until=lambda: not RemoteCommand.objects.exclude(state__in=RemoteCommand.FINAL).exists(),
        )
    finally:
        sim.close()
        listener.forget_session()
    cmd.refresh_from_db()
    cut.refresh_from_db()
    assert cmd.state == "acknowledged" and cmd.result["total"] == registers(0, 1, date.today())["total"]
    assert cut.state == "acknowledged" and cut.result == {"relay": "open"} and cut.attempts == 1
    # a terminal that never answers: retried, then timed out
    lost = rs.send_remote_command(
        meter=meter,
        command="reconnect",
        requested_by=None,
        at=timezone.now(),
        reason="已缴费",
        max_attempts=2,
        retry_seconds=1,
    )
    silent = Simulator(url=LOCAL, terminals=1, meters_per_terminal=3, prefix=prefix, answer="ignore")
    silent.connect()
    listener = Listener(url=LOCAL, client_id=f"mmis-test-{prefix}", writers=0)
    try:
        listener.run(max_seconds=20, until=lambda: RemoteCommand.objects.get(pk=lost.pk).finished)
    finally:
        silent.close()
        listener.forget_session()
    lost.refresh_from_db()
    assert lost.state == "timed_out" and lost.attempts == 2


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="no mosquitto binary")
def test_broker_restart_and_offline_listener_lose_nothing(utility, tmp_path):
    port = _free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {tmp_path}/\nautosave_interval 1\n"
    )

    def start_broker():
        p = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(50):
            if _broker_up(port=port):
                return p
            time.sleep(0.1)
        raise RuntimeError("private broker did not start")

    url = f"mqtt://127.0.0.1:{port}"
    broker = start_broker()
    prefix = "R"
    register_in_db(terminals=2, meters_per_terminal=30, prefix=prefix, org=utility.stations[0])
    try:

        def publish(last_day, days=1):
            sim = Simulator(
                url=url, terminals=2, meters_per_terminal=30, days=days, last_day=last_day, prefix=prefix
            )
            sim.connect()
            sim.publish_all()
            sim.close()

        listener = Listener(url=url, client_id="mmis-restart-test", writers=0)
        done = threading.Event()

        def scenario():
            listener.connected.wait(10)
            time.sleep(0.3)
            publish(date(2026, 1, 1))
            time.sleep(1.0)
            nonlocal broker
            broker.terminate()  # a broker restart (its persistence is saved on exit)
            broker.wait(5)
            broker = start_broker()
            assert listener.connected.wait(0) is False or True
            for _ in range(100):  # wait for the listener's automatic reconnect
                if listener.connected.is_set() and listener.connects >= 2:
                    break
                time.sleep(0.1)
            publish(date(2026, 1, 2))
            done.set()

        threading.Thread(target=scenario, daemon=True).start()
        listener.run(
            max_seconds=40, until=lambda: done.is_set() and DailyFrozenReading.objects.count() >= 120
        )
        assert listener.connects >= 2
        assert DailyFrozenReading.objects.count() == 120
        # the listener is away: the broker keeps its messages in the persistent session
        publish(date(2026, 1, 3))
        listener = Listener(url=url, client_id="mmis-restart-test", writers=0)
        listener.run(idle_exit=2, max_seconds=20)
        assert DailyFrozenReading.objects.count() == 180
    finally:
        broker.terminate()
        broker.wait(5)


@needs_broker
@pytest.mark.django_db(transaction=True)
def test_writer_threads_and_a_shared_subscription_lose_nothing(utility):
    """Two listeners in one shared subscription, each writing with two threads (their own
    connections, committed data: PostgreSQL), share the terminals, store every reading once and
    acknowledge everything."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("writer threads need a database that takes concurrent writers (PostgreSQL)")
    prefix = f"S{uuid.uuid4().hex[:5]}"
    register_in_db(terminals=8, meters_per_terminal=50, prefix=prefix, org=utility.stations[0])
    kw = dict(url=LOCAL, shared=prefix, writers=2, batch_readings=60, batch_seconds=0.05, receive_maximum=4)
    listeners = [Listener(client_id=f"mmis-test-{prefix}-{k}", **kw) for k in "ab"]
    expected = 8 * 50 * 5
    results = {}

    def run(k, li):
        results[k] = li.run(max_seconds=60, until=lambda: DailyFrozenReading.objects.count() >= expected)

    threads = [threading.Thread(target=run, args=(k, li), daemon=True) for k, li in enumerate(listeners)]
    for t in threads:
        t.start()
    for li in listeners:
        assert li.subscribed.wait(10)
    sim = Simulator(
        url=LOCAL, terminals=8, meters_per_terminal=50, days=5, last_day=date(2026, 3, 5), prefix=prefix
    )
    sim.connect()
    for _ in range(2):  # everything twice: the second round is all duplicates
        sim.acked = sim._published = 0
        sim.publish_all()
    sim.close()
    try:
        for t in threads:
            t.join(70)
    finally:
        for li in listeners:
            li.forget_session()
    assert DailyFrozenReading.objects.count() == expected
    a, b = results[0], results[1]
    assert a.messages > 0 and b.messages > 0  # the broker divided the terminals' messages
    assert a.messages + b.messages <= 2 * 8 * 5
    assert a.stored + b.stored == expected
    for li in listeners:  # every batch acknowledged, in order
        assert li.next_ack == li.seq and not li.done
