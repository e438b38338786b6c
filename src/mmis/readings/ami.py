"""AMI ingestion: terminal messages from MQTT to stored readings, in batches.

Uplink (`mmis/ami/<terminal>/up`), QoS 1:
- JSON `{"type": "frozen", "day": "2026-11-01", "meters": [{"addr": "000000000001", "total": "1234.56",
  "sharp": …, "peak": …, "flat": …, "valley": …, "reactive": …, "flags": ["voltage_loss"]}, …]}`: the
  daily frozen registers (00:00 of `day`) of many meters in one message;
- JSON `{"type": "interval", "meter": "<addr>", "start": "2026-11-01T00:00:00+08:00", "minutes": 15,
  "values": ["0.25", …]}`: a load curve;
- JSON `{"type": "frames", "day": "…", "frames": "<hex>"}` or a raw hex payload: DL/T 645 replies
  (00010000 total, 00010100…00010400 rates, 00030000 reactive) per meter; a raw payload is the
  frozen value of the day it arrives;
- JSON `{"type": "ack", "command_id": "…", "ok": true, "result": {…}}`: a terminal's answer to a
  remote command.

Anything malformed is counted, logged and kept in DeadLetter; it never stops the listener. The
listener acknowledges a message to the broker only after its rows are committed (paho manual
acks), with a persistent MQTT v5 session (fixed client id, clean start off, a session expiry): what
the broker delivered is never lost, and a redelivery after a crash is absorbed by the unique (meter,
day) key.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from mmis.common.errors import InvalidInput
from mmis.readings import dlt645, services
from mmis.readings.models import (
    DailyFrozenReading,
    DeadLetter,
    IntervalReading,
    ReadingBook,
    ReadingMethod,
    Terminal,
)
from mmis.readings.mqtt import UP_TOPIC, broker_params, terminal_of

log = logging.getLogger("mmis.ami")

NUMBER = re.compile(r"\d{1,10}(?:\.\d{1,4})?")
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
RATE_DIS = {
    "00010000": "total",
    "00010100": "sharp",
    "00010200": "peak",
    "00010300": "flat",
    "00010400": "valley",
    "00030000": "reactive",
}
FROZEN_VALUES = ("total", "sharp", "peak", "flat", "valley", "reactive")
CLIENT_ID = "mmis-ami-listener"


class BadMessage(Exception):
    pass


@dataclass
class Parsed:
    frozen: list[tuple] = field(
        default_factory=list
    )  # (addr, day, total, sharp, peak, flat, valley, reactive, flags)
    intervals: list[tuple] = field(default_factory=list)  # (addr, start datetime, minutes, kwh)
    acks: list[tuple[str, bool, dict]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # parts rejected (the rest is kept)


def _num(v: Any, what: str) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise BadMessage(f"{what}: not a number")
    s = v if isinstance(v, str) else str(v)
    if NUMBER.fullmatch(s) is None:
        raise BadMessage(f"{what}: {s!r} is not a non-negative number with at most 4 decimals")
    return s


def _day(v: Any) -> str:
    if not isinstance(v, str) or DAY.fullmatch(v) is None:
        raise BadMessage(f"day {v!r} is not YYYY-MM-DD")
    try:
        date.fromisoformat(v)
    except ValueError:
        raise BadMessage(f"day {v} is not a real date") from None
    return v


def parse(payload: bytes, *, received: datetime) -> Parsed:
    """One uplink message → rows. Raises BadMessage when nothing of it can be used."""
    text = payload.strip()
    if not text:
        raise BadMessage("empty message")
    if text[:1] != b"{":
        return _parse_frames(
            text.decode("ascii", errors="replace"), timezone.localtime(received).date().isoformat()
        )
    try:
        msg = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessage(f"malformed JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise BadMessage("a message is a JSON object")
    kind = msg.get("type")
    try:
        if kind == "frozen":
            return _parse_frozen(msg)
        if kind == "interval":
            return _parse_interval(msg)
        if kind == "frames":
            return _parse_frames(str(msg.get("frames", "")), _day(msg.get("day")))
        if kind == "ack":
            cid = msg.get("command_id")
            if not isinstance(cid, str) or not cid:
                raise BadMessage("ack without command_id")
            result = msg.get("result") if isinstance(msg.get("result"), dict) else {}
            return Parsed(acks=[(cid, bool(msg.get("ok")), result)])
    except ValueError as exc:
        raise BadMessage(str(exc)) from None
    raise BadMessage(f"unknown message type {kind!r}")


def _parse_frozen(msg: dict) -> Parsed:
    day = _day(msg.get("day"))
    meters = msg.get("meters")
    if not isinstance(meters, list):
        raise BadMessage("frozen message without a meters list")
    out = Parsed()
    rows = out.frozen
    for i, m in enumerate(meters):
        try:
            if not isinstance(m, dict):
                raise BadMessage("not an object")
            addr = m.get("addr")
            if not isinstance(addr, str) or len(addr) != 12 or not addr.isdigit():
                raise BadMessage(f"address {addr!r} is not 12 digits")
            total = _num(m.get("total"), "total")
            if total is None:
                raise BadMessage("total is missing")
            flags = m.get("flags") or []
            if not isinstance(flags, list):
                raise BadMessage("flags is not a list")
            rows.append(
                (
                    addr,
                    day,
                    total,
                    _num(m.get("sharp"), "sharp"),
                    _num(m.get("peak"), "peak"),
                    _num(m.get("flat"), "flat"),
                    _num(m.get("valley"), "valley"),
                    _num(m.get("reactive"), "reactive"),
                    ",".join(str(f) for f in flags)[:100],
                )
            )
        except BadMessage as exc:
            out.problems.append(f"meters[{i}]: {exc}")
    return out


def _parse_interval(msg: dict) -> Parsed:
    addr = msg.get("meter")
    if not isinstance(addr, str) or len(addr) != 12 or not addr.isdigit():
        raise BadMessage(f"meter address {addr!r} is not 12 digits")
    try:
        start = datetime.fromisoformat(str(msg.get("start")))
    except ValueError:
        raise BadMessage(f"start {msg.get('start')!r} is not an ISO date-time") from None
    if start.tzinfo is None:
        start = timezone.make_aware(start)
    minutes = msg.get("minutes", 15)
    if not isinstance(minutes, int) or minutes not in (1, 5, 15, 30, 60):
        raise BadMessage("minutes must be 1, 5, 15, 30 or 60")
    values = msg.get("values")
    if not isinstance(values, list) or not values:
        raise BadMessage("values must be a non-empty list")
    out = Parsed()
    for i, v in enumerate(values):
        try:
            kwh = _num(v, f"values[{i}]")
        except BadMessage as exc:
            out.problems.append(str(exc))
            continue
        if kwh is not None:
            out.intervals.append((addr, start + timedelta(minutes=minutes * i), minutes, kwh))
    return out


def _parse_frames(hex_text: str, day: str) -> Parsed:
    out = Parsed()
    regs: dict[str, dict[str, str]] = defaultdict(dict)
    try:
        for frame in dlt645.iter_frames(hex_text):
            if frame.direction is not dlt645.Direction.REPLY or frame.value is None:
                out.problems.append(f"frame from {frame.address}: not a reply with a value")
                continue
            name = RATE_DIS.get(frame.data_id or "")
            if name is None:
                continue  # voltage, current, power: not stored as registers
            regs[frame.address][name] = format(frame.value, "f")
    except InvalidInput as exc:
        if not regs:
            raise BadMessage(f"DL/T 645: {exc}") from None
        out.problems.append(f"DL/T 645: {exc}")
    for addr, r in regs.items():
        if "total" not in r:
            out.problems.append(f"meter {addr}: no total register in the frames")
            continue
        out.frozen.append(
            (
                addr,
                day,
                r["total"],
                r.get("sharp"),
                r.get("peak"),
                r.get("flat"),
                r.get("valley"),
                r.get("reactive"),
                "",
            )
        )
    return out


# --- storing -------------------------------------------------------------------------------------
@dataclass
class Stats:
    messages: int = 0
    readings: int = 0  # frozen meter-days and interval points received
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    acks: int = 0
    unknown_meters: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class MeterDirectory:
    """comm_address → (meter id, metering point id), refreshed when unknown addresses show up."""

    def __init__(self, refresh_seconds: float = 10.0) -> None:
        self.by_addr: dict[str, tuple[int, int | None]] = {}
        self.loaded_at = 0.0
        self.refresh_seconds = refresh_seconds
        self.reload()

    def reload(self) -> None:
        from mmis.assets.models import Meter

        self.by_addr = {
            a: (pk, pid)
            for a, pk, pid in Meter.objects.exclude(comm_address="")
            .exclude(state="scrapped")
            .values_list("comm_address", "pk", "metering_point_id")
            .iterator(chunk_size=20000)
        }
        self.loaded_at = time.monotonic()

    def lookup(self, addrs: Iterable[str]) -> dict[str, tuple[int, int | None]]:
        missing = [a for a in addrs if a not in self.by_addr]
        if missing and time.monotonic() - self.loaded_at > self.refresh_seconds:
            self.reload()
        return self.by_addr


def _copy_line(values: Iterable[Any]) -> str:
    return "\t".join("\\N" if v is None else str(v) for v in values)


FROZEN_COLS = ("meter_id", "metering_point_id", "day", *FROZEN_VALUES, "flags", "received_at")
INTERVAL_COLS = ("meter_id", "start", "minutes", "kwh", "received_at")


def store_frozen(rows: list[tuple], *, received: datetime) -> int:
    """Insert (meter_id, point_id, day, total…reactive, flags) rows, ignoring (meter, day) already
    stored. Returns how many were new. PostgreSQL: COPY straight into the table inside a savepoint
    (a batch rarely repeats a stored reading); when one is repeated (a redelivery, a terminal
    sending a day again) the savepoint is rolled back and the rows go through a temporary table
    and one INSERT … ON CONFLICT DO NOTHING. SQLite: INSERT OR IGNORE."""
    if not rows:
        return 0
    table = DailyFrozenReading._meta.db_table
    cols = ", ".join(FROZEN_COLS)
    if connection.vendor == "postgresql":
        from psycopg import errors as pg_errors

        at = received.isoformat()
        text = "\n".join(_copy_line((*r, at)) for r in rows) + "\n"
        try:
            with (
                transaction.atomic(),
                connection.cursor() as cur,
                cur.cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as cp,
            ):
                cp.write(text)
            return len(rows)
        except (IntegrityError, pg_errors.UniqueViolation):
            pass  # some (meter, day) is stored already: keep the new ones only
        with connection.cursor() as cur:
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS tmp_frozen ON COMMIT DELETE ROWS AS "
                f"SELECT {cols} FROM {table} WITH NO DATA"
            )
            with cur.cursor.copy(f"COPY tmp_frozen ({cols}) FROM STDIN") as cp:
                cp.write(text)
            cur.execute(
                f"INSERT INTO {table} ({cols}) SELECT {cols} FROM tmp_frozen "
                "ON CONFLICT (meter_id, day) DO NOTHING"
            )
            return cur.rowcount  # tmp_frozen empties itself at commit
    at = DailyFrozenReading._meta.get_field("received_at").get_db_prep_value(received, connection)
    marks = ", ".join(["%s"] * len(FROZEN_COLS))
    with connection.cursor() as cur:
        before = _count(cur, table)
        cur.executemany(f"INSERT OR IGNORE INTO {table} ({cols}) VALUES ({marks})", [(*r, at) for r in rows])
        return _count(cur, table) - before


def _count(cur, table: str) -> int:
    cur.execute(f"SELECT COUNT(*) FROM {table}")
    return cur.fetchone()[0]


def store_intervals(rows: list[tuple], *, received: datetime) -> int:
    if not rows:
        return 0
    objs = [
        IntervalReading(meter_id=m, start=s, minutes=mi, kwh=k, received_at=received) for m, s, mi, k in rows
    ]
    window = IntervalReading.objects.filter(
        meter_id__in={r[0] for r in rows},
        start__gte=min(r[1] for r in rows),
        start__lte=max(r[1] for r in rows),
    )
    before = window.count()
    IntervalReading.objects.bulk_create(objs, ignore_conflicts=True, batch_size=5000)
    return window.count() - before


@dataclass
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received: datetime


@dataclass
class Prepared:
    """A batch parsed and resolved to meter ids, ready to be stored in one transaction."""

    messages: int = 0
    readings: int = 0
    unknown_meters: int = 0
    frozen: list[tuple] = field(default_factory=list)
    intervals: list[tuple] = field(default_factory=list)
    acks: list[tuple[str, bool, dict]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    terminals: set[str] = field(default_factory=set)
    days: set[str] = field(default_factory=set)


class Ingestor:
    """Turns batches of uplink messages into rows in one transaction each. `prepare` (parsing,
    meter lookup: Python only) and `commit` (the database) are separate so that a listener can
    parse the next batch while the previous one is being written."""

    def __init__(self, *, publish: Callable[[str, dict], None] | None = None) -> None:
        self.meters = MeterDirectory()
        self.stats = Stats()
        self.publish = publish
        self.lock = threading.Lock()  # stats and reading-day work shared by writer threads
        self.reading_days = set(
            ReadingBook.objects.filter(
                active=True, method__in=[ReadingMethod.AUTOMATED, ReadingMethod.MIXED]
            ).values_list("reading_day", flat=True)
        )

    def handle(self, batch: list[Incoming]) -> None:
        self.commit(self.prepare(batch))

    def prepare(self, batch: list[Incoming]) -> Prepared:
        out = Prepared(messages=len(batch))
        for m in batch:
            term = terminal_of(m.topic)
            if term:
                out.terminals.add(term)
            try:
                p = parse(m.payload, received=m.received)
            except BadMessage as exc:
                out.dead.append(self._dead(m, str(exc)))
                continue
            except Exception as exc:  # never stop on input
                out.dead.append(self._dead(m, f"unreadable: {exc!r}"))
                continue
            directory = self.meters.lookup({r[0] for r in p.frozen} | {r[0] for r in p.intervals})
            unknown = set()
            for r in p.frozen:
                ids = directory.get(r[0])
                if ids is None:
                    unknown.add(r[0])
                    continue
                out.frozen.append((ids[0], ids[1], *r[1:]))
                out.days.add(r[1])
            for r in p.intervals:
                ids = directory.get(r[0])
                if ids is None:
                    unknown.add(r[0])
                    continue
                out.intervals.append((ids[0], *r[1:]))
            out.readings += len(p.frozen) + len(p.intervals)
            out.acks.extend(p.acks)
            problems = list(p.problems)
            if unknown:
                out.unknown_meters += len(unknown)
                problems.append(
                    f"unknown meters: {', '.join(sorted(unknown)[:20])}" + (" …" if len(unknown) > 20 else "")
                )
            if problems:
                out.dead.append(self._dead(m, "; ".join(problems)[:300]))
        return out

    def commit(self, p: Prepared) -> None:
        now = timezone.now()
        with transaction.atomic():
            new = store_frozen(p.frozen, received=now)
            new += store_intervals(p.intervals, received=now)
            DeadLetter.objects.bulk_create(p.dead)
            if p.terminals:
                Terminal.objects.filter(code__in=p.terminals).update(last_seen_at=now)
        with self.lock:
            s = self.stats
            s.messages += p.messages
            s.readings += p.readings
            s.unknown_meters += p.unknown_meters
            s.stored += new
            s.duplicates += len(p.frozen) + len(p.intervals) - new
            s.dead_letters += len(p.dead)
            s.batches += 1
        for cid, ok, result in p.acks:
            if services.finish_command(request_id=cid, ok=ok, result=result, at=now) is not None:
                with self.lock:
                    self.stats.acks += 1
        days = [date.fromisoformat(d) for d in sorted(p.days)]
        days = [d for d in days if d.day in self.reading_days]
        if days:
            with self.lock:  # one writer at a time turns frozen values into billing readings
                for day in days:
                    services.readings_from_frozen(on=day, at=now)
        for d in p.dead:
            log.warning("dead letter on %s: %s", d.topic, d.reason)

    def _dead(self, m: Incoming, reason: str) -> DeadLetter:
        try:
            text = m.payload.decode("utf-8")
        except UnicodeDecodeError:
            text = "hex:" + m.payload.hex()
        return DeadLetter(
            received_at=m.received, topic=m.topic[:200], payload=text[:100_000], reason=reason[:300]
        )


# --- the listener --------------------------------------------------------------------------------
SESSION_EXPIRY = 30 * 24 * 3600  # the broker keeps an absent listener's session (and messages) 30 days


class Listener:
    """Subscribes to mmis/ami/+/up with QoS 1 on a persistent MQTT v5 session and stores in
    batches; acknowledges each message to the broker after its batch is committed, in the order
    received.

    Throughput: the v5 Receive Maximum lets the broker keep `receive_maximum` unacknowledged
    messages in flight to us (a v3.1.1 subscriber gets the broker's max_inflight_messages, 20 on
    Mosquitto), so the next batch is already here while one commits; the main thread parses
    batches while `writers` threads (each its own database connection) store them, so parsing,
    PostgreSQL's inserts and its commit flushes overlap on the cores. `shared` subscribes as a
    member of a shared subscription ($share/<group>/mmis/ami/+/up) so that several listener
    processes divide the terminals between them. `writers=0` stores in the receiving thread
    (one connection: tests that run inside a database transaction, SQLite).
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        client_id: str = CLIENT_ID,
        batch_readings: int = 20000,
        batch_seconds: float = 0.25,
        receive_maximum: int = 200,
        writers: int = 2,
        shared: str | None = None,
        on_batch: Callable[[Stats], None] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.on_ready = on_ready
        self.params = broker_params(url)
        self.queue: queue.Queue[Incoming] = queue.Queue()
        self.batch_readings = batch_readings
        self.batch_seconds = batch_seconds
        self.on_batch = on_batch
        self.topic = f"$share/{shared}/{UP_TOPIC}" if shared else UP_TOPIC
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self.connects = 0
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        self.connect_properties = Properties(PacketTypes.CONNECT)
        self.connect_properties.ReceiveMaximum = max(1, min(receive_maximum, 65535))
        self.connect_properties.SessionExpiryInterval = SESSION_EXPIRY
        if self.params.username:
            self.client.username_pw_set(self.params.username, self.params.password)
        self.client.max_inflight_messages_set(100)  # our own publishes (command downlinks)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.subscribed = threading.Event()
        self.ingestor = Ingestor(publish=self._publish)
        self.last_tick = 0.0
        self.writer_count = max(0, writers)
        self.work: queue.Queue[tuple[int, list[Incoming], Prepared] | None] = queue.Queue(
            maxsize=max(1, self.writer_count)
        )
        self.ack_lock = threading.Lock()
        self.done: dict[int, list[Incoming]] = {}
        self.next_ack = 0
        self.seq = 0
        self.threads: list[threading.Thread] = []

    def _publish(self, topic: str, payload: dict) -> None:
        self.client.publish(topic, json.dumps(payload), qos=1)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect refused: %s", reason_code)
            return
        self.connects += 1
        client.subscribe(self.topic, qos=1)
        self.connected.set()
        log.info(
            "connected to %s:%s (session present: %s)",
            self.params.host,
            self.params.port,
            flags.session_present,
        )

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.subscribed.set()
        if self.on_ready is not None:
            self.on_ready()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self.stopping.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        self.queue.put(Incoming(msg.topic, msg.payload, msg.mid, msg.qos, datetime.now(UTC)))

    def start(self) -> None:
        self.client.connect_async(
            self.params.host,
            self.params.port,
            keepalive=30,
            clean_start=False,
            properties=self.connect_properties,
        )
        self.client.loop_start()

    def forget_session(self) -> None:
        """Remove this client id's persistent session from the broker (tests, decommissioning)."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client._client_id.decode(), protocol=mqtt.MQTTv5
        )
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        c.connect(self.params.host, self.params.port, clean_start=True, properties=props)
        c.loop_start()
        time.sleep(0.2)
        c.disconnect()
        c.loop_stop()

    def stop(self) -> None:
        self.stopping.set()
        self.client.disconnect()
        self.client.loop_stop()

    def run(
        self,
        *,
        idle_exit: float | None = None,
        max_seconds: float | None = None,
        until: Callable[[], bool] | None = None,
    ) -> Stats:
        """Consume until stopped (or idle for `idle_exit` seconds, `max_seconds`, or `until()`)."""
        self.start()
        writers = self.threads = [
            threading.Thread(target=self._writer, name=f"ami-writer-{i}", daemon=True)
            for i in range(self.writer_count)
        ]
        for w in writers:
            w.start()
        began = last_data = time.monotonic()
        try:
            while not self.stopping.is_set():
                batch = self._collect()
                now = time.monotonic()
                if batch:
                    last_data = now
                    self._dispatch(batch)
                if now - self.last_tick >= 1.0:
                    self.last_tick = now
                    self._tick()
                if idle_exit is not None and now - last_data > idle_exit:
                    break
                if max_seconds is not None and now - began > max_seconds:
                    break
                if until is not None and until():
                    break
        finally:
            for _ in writers:  # let the writers finish (and acknowledge) what they hold
                self._put(None)
            for w in writers:
                w.join(timeout=120)
            self.stop()
        return self.ingestor.stats

    def _collect(self) -> list[Incoming]:
        batch: list[Incoming] = []
        size = 0
        deadline = None
        while size < self.batch_readings:
            timeout = 0.2 if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                m = self.queue.get(timeout=timeout)
            except queue.Empty:
                break
            if deadline is None:
                deadline = time.monotonic() + self.batch_seconds
            batch.append(m)
            size += max(1, len(m.payload) // 150)  # about one reading per 150 bytes
            if time.monotonic() >= deadline:
                break
        return batch

    def _dispatch(self, batch: list[Incoming]) -> None:
        """Parse here, store in a writer thread (waits while all writers are busy)."""
        prepared = self.ingestor.prepare(batch)
        seq, self.seq = self.seq, self.seq + 1
        if self.writer_count == 0:
            self._store(batch, prepared)
            self._acknowledge(seq, batch)
            if self.on_batch is not None:
                self.on_batch(self.ingestor.stats)
            return
        self._put((seq, batch, prepared))

    def _writer(self) -> None:
        try:
            while True:
                item = self.work.get()
                if item is None:
                    return
                seq, batch, prepared = item
                self._store(batch, prepared)
                self._acknowledge(seq, batch)
                if self.on_batch is not None:
                    self.on_batch(self.ingestor.stats)
        except Exception:
            # nothing of the failed batch (nor after it) is acknowledged: the broker keeps it
            log.exception("a writer stopped; the listener stops without acknowledging the rest")
            self.stopping.set()
        finally:
            connection.close()

    def _put(self, item: tuple | None) -> bool:
        """Hand work to the writers; False when they are gone (the listener is stopping)."""
        while True:
            try:
                self.work.put(item, timeout=1.0)
                return True
            except queue.Full:
                if self.stopping.is_set() and item is not None:
                    return False
                if not any(t.is_alive() for t in self.threads):
                    return False

    def _store(self, batch: list[Incoming], prepared: Prepared) -> None:
        for attempt in range(5):
            try:
                self.ingestor.commit(prepared)
                return
            except Exception:
                log.exception("batch of %s messages failed (attempt %s)", len(batch), attempt + 1)
                connection.close()
                time.sleep(min(2**attempt, 10))
        # the batch keeps failing: keep each message as a dead letter rather than block the stream
        for attempt in range(5):
            try:
                with transaction.atomic():
                    DeadLetter.objects.bulk_create(
                        [self.ingestor._dead(m, "storing failed repeatedly") for m in batch]
                    )
                with self.ingestor.lock:
                    self.ingestor.stats.dead_letters += len(batch)
                return
            except Exception:
                log.exception("dead letters of a failed batch could not be stored either")
                connection.close()
                time.sleep(min(2**attempt, 10))
        raise RuntimeError("the database refuses every write; stopping without acknowledging")

    def _acknowledge(self, seq: int, batch: list[Incoming]) -> None:
        """Acknowledge a stored batch, keeping the order in which the broker sent the messages
        (batches stored out of order by two writers wait for the ones before them)."""
        with self.ack_lock:
            self.done[seq] = batch
            while self.next_ack in self.done:
                for m in self.done.pop(self.next_ack):
                    if m.qos > 0:
                        self.client.ack(m.mid, m.qos)
                self.next_ack += 1

    def _tick(self) -> None:
        try:
            services.dispatch_commands(at=timezone.now(), publish=self._publish)
        except Exception:
            log.exception("dispatching remote commands failed")


def error_counts(rows: Iterable[DeadLetter]) -> Counter:
    return Counter(r.reason.split(":")[0] for r in rows)
