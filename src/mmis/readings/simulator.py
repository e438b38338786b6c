"""AMI simulator: plays terminals on MQTT for demos, tests and benchmarks.

Terminal `t` is `<prefix><t:05d>`; its meter `m` has the DL/T 645 address `9{t:06d}{m:05d}`.
Registers are a deterministic function of (terminal, meter, day), so a rerun publishes the same
values (duplicates that the listener ignores). Each terminal sends one message per day with the
daily frozen registers of all its meters (QoS 1). Tuned for throughput: a large in-flight window
and no per-message wait (a naive QoS 1 publisher that waits for each PUBACK moves < 100 msg/s).
The simulator answers remote commands on `mmis/ami/<terminal>/down`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from mmis.readings import dlt645
from mmis.readings.mqtt import broker_params

EPOCH = date(2020, 1, 1)
WRAP = 10**8  # 6 integer digits + 2 decimals, in hundredths


def address(t: int, m: int) -> str:
    return f"9{t:06d}{m:05d}"


def centi(c: int) -> str:
    return f"{c // 100}.{c % 100:02d}"


def registers(t: int, m: int, day: date, *, tou: bool = True) -> dict[str, str]:
    """The meter's frozen registers at 00:00 of `day` (kWh, 2 decimals)."""
    use = 500 + (t * 7919 + m * 104729) % 2500  # 5.00 … 29.99 kWh a day
    base = ((t * 131 + m * 17) % 50000) * 100
    total = (base + use * (day - EPOCH).days) % WRAP
    out = {"total": centi(total), "reactive": centi(total * 3 // 10)}
    if tou:
        sharp, peak, flat = total // 10, total * 3 // 10, total * 4 // 10
        out.update(
            sharp=centi(sharp), peak=centi(peak), flat=centi(flat), valley=centi(total - sharp - peak - flat)
        )
    return out


def frozen_payload(t: int, meters: int, day: date) -> bytes:
    """The JSON of one terminal's daily frozen message, built as text (fast; same values as
    `registers`)."""
    n = (day - EPOCH).days
    parts = []
    for m in range(meters):
        use = 500 + (t * 7919 + m * 104729) % 2500
        total = (((t * 131 + m * 17) % 50000) * 100 + use * n) % WRAP
        sharp, peak, flat = total // 10, total * 3 // 10, total * 4 // 10
        valley = total - sharp - peak - flat
        r = total * 3 // 10
        parts.append(
            f'{{"addr":"9{t:06d}{m:05d}","total":"{total // 100}.{total % 100:02d}",'
            f'"sharp":"{sharp // 100}.{sharp % 100:02d}","peak":"{peak // 100}.{peak % 100:02d}",'
            f'"flat":"{flat // 100}.{flat % 100:02d}","valley":"{valley // 100}.{valley % 100:02d}",'
            f'"reactive":"{r // 100}.{r % 100:02d}"}}'
        )
    return f'{{"type":"frozen","day":"{day.isoformat()}","meters":[{",".join(parts)}]}}'.encode()


def frames_hex(t: int, meters: range, day: date) -> str:
    out = []
    names = {
        "total": "00010000",
        "sharp": "00010100",
        "peak": "00010200",
        "flat": "00010300",
        "valley": "00010400",
        "reactive": "00030000",
    }
    for m in meters:
        regs = registers(t, m, day)
        for name, di in names.items():
            out.append(dlt645.to_hex(dlt645.build_reply(address(t, m), di, regs[name])))
    return "".join(out)


@dataclass
class Result:
    messages: int = 0
    readings: int = 0
    seconds: float = 0.0
    commands_answered: int = 0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0


class Simulator:
    def __init__(
        self,
        *,
        url: str | None = None,
        terminals: int = 10,
        meters_per_terminal: int = 100,
        days: int = 1,
        last_day: date | None = None,
        prefix: str = "SIM",
        inflight: int = 1000,
        frames_every: int = 0,
        answer: str = "ok",  # ok | fail | ignore
        client_id: str | None = None,
        seed: int = 0,
        pregenerate: bool = False,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.params = broker_params(url)
        self.terminals = terminals
        self.meters = meters_per_terminal
        self.days = days
        self.last_day = last_day or date.today() - timedelta(days=1)
        self.prefix = prefix
        self.frames_every = frames_every
        self.answer = answer
        self.rng = random.Random(seed)
        self.pregenerate = pregenerate
        self.result = Result()
        self.acked = 0
        self.cv = threading.Condition()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"mmis-sim-{id(self):x}",
            clean_session=True,
        )
        if self.params.username:
            self.client.username_pw_set(self.params.username, self.params.password)
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.connected = threading.Event()
        self.inflight = inflight

    def code(self, t: int) -> str:
        return f"{self.prefix}{t:05d}"

    # --- connection ---------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe("mmis/ami/+/down", qos=1)
        self.connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.cv:
            self.acked += 1
            self.cv.notify_all()

    def _on_message(self, client, userdata, msg) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 4 or not parts[2].startswith(self.prefix):
            return
        try:
            cmd = json.loads(msg.payload)
        except ValueError:
            return
        if cmd.get("type") != "command" or self.answer == "ignore":
            return
        reply: dict[str, Any] = {
            "type": "ack",
            "command_id": cmd.get("command_id"),
            "ok": self.answer == "ok",
        }
        if self.answer == "ok":
            if cmd.get("command") == "read_now":
                addr = str(cmd.get("meter", ""))
                try:
                    t, m = int(addr[1:7]), int(addr[7:])
                    reply["result"] = {"meter": addr, **registers(t, m, date.today())}
                except ValueError:
                    reply["ok"] = False
            else:
                reply["result"] = {"relay": "open" if cmd.get("command") == "disconnect" else "closed"}
        else:
            reply["result"] = {"error": "relay did not operate"}
        client.publish(f"mmis/ami/{parts[2]}/up", json.dumps(reply), qos=1)
        self.result.commands_answered += 1

    def connect(self) -> None:
        self.client.connect(self.params.host, self.params.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError(f"no MQTT broker answering at {self.params.host}:{self.params.port}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # --- messages -----------------------------------------------------------------------------
    def messages(self) -> Iterator[tuple[str, bytes, int]]:
        """(topic, payload, readings) for every terminal and day, oldest day first."""
        first = self.last_day - timedelta(days=self.days - 1)
        for i in range(self.days):
            day = first + timedelta(days=i)
            for t in range(self.terminals):
                topic = f"mmis/ami/{self.code(t)}/up"
                if self.frames_every and t % self.frames_every == 0:
                    payload = json.dumps(
                        {
                            "type": "frames",
                            "day": day.isoformat(),
                            "frames": frames_hex(t, range(self.meters), day),
                        }
                    ).encode()
                else:
                    payload = frozen_payload(t, self.meters, day)
                yield topic, payload, self.meters

    def publish_all(self, *, extra: list[tuple[str, bytes]] = ()) -> Result:
        """Publish every message with QoS 1 and wait until the broker acknowledged all of them."""
        msgs = getattr(self, "prepared", None) or (
            list(self.messages()) if self.pregenerate else self.messages()
        )
        began = self.started_at = time.perf_counter()
        sent = 0
        for topic, payload, n in msgs:
            self._send(topic, payload)
            sent += 1
            self.result.readings += n
        for topic, payload in extra:
            self._send(topic, payload)
            sent += 1
        with self.cv:
            self.cv.wait_for(lambda: self.acked >= sent, timeout=120)
        self.result.messages = sent
        self.result.seconds = time.perf_counter() - began
        return self.result

    def prepare(self) -> None:
        """Build every message now, so that publishing measures the transport only."""
        self.prepared = list(self.messages())

    def _send(self, topic: str, payload: bytes) -> None:
        with self.cv:  # keep at most two windows outstanding in the client's memory
            self.cv.wait_for(lambda: self._outstanding() < 2 * self.inflight, timeout=60)
        info = self.client.publish(topic, payload, qos=1)
        self._published = getattr(self, "_published", 0) + 1
        if info.rc != 0:
            raise RuntimeError(f"publish failed: rc={info.rc}")

    def _outstanding(self) -> int:
        return getattr(self, "_published", 0) - self.acked

    def serve(self, seconds: float) -> None:
        """Stay connected answering commands for `seconds`."""
        time.sleep(seconds)


def naive_rate(url: str | None, messages: int = 200) -> float:
    """QoS 1 the naive way: publish, wait for the PUBACK, publish the next (messages/s)."""
    import paho.mqtt.client as mqtt

    p = broker_params(url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"mmis-naive-{time.time_ns()}")
    c.connect(p.host, p.port)
    c.loop_start()
    began = time.perf_counter()
    for i in range(messages):
        c.publish("mmis/bench/naive", f'{{"n":{i}}}', qos=1).wait_for_publish(5)
    rate = messages / (time.perf_counter() - began)
    c.disconnect()
    c.loop_stop()
    return rate


def register_in_db(*, terminals: int, meters_per_terminal: int, prefix: str = "SIM", org=None) -> int:
    """Create the simulated terminals and their meters in the database (idempotent, bulk)."""
    from django.db import transaction

    from mmis.assets.models import Meter
    from mmis.org.models import Org
    from mmis.readings.models import Terminal, TerminalMeter

    if org is None:
        org = Org.objects.filter(level=Org.Level.STATION).order_by("path").first()
        if org is None:
            raise RuntimeError("no station in the org tree: run the demo first (python -m mmis demo)")
    created = 0
    with transaction.atomic():
        codes = [f"{prefix}{t:05d}" for t in range(terminals)]
        have = set(Terminal.objects.filter(code__in=codes).values_list("code", flat=True))
        kinds = list(Terminal.Kind.values)
        Terminal.objects.bulk_create(
            [
                Terminal(
                    code=c,
                    name=f"模拟终端 {c}",
                    org=org,
                    kind=kinds[i % len(kinds)] if i % 5 == 0 else "public_transformer",
                    concentrator=i % 5 != 0,
                )
                for i, c in enumerate(codes)
                if c not in have
            ]
        )
        tids = dict(Terminal.objects.filter(code__in=codes).values_list("code", "pk"))
        for t in range(terminals):
            addrs = [address(t, m) for m in range(meters_per_terminal)]
            existing = set(
                Meter.objects.filter(comm_address__in=addrs).values_list("comm_address", flat=True)
            )
            new = [
                Meter(
                    org=org,
                    asset_no=f"S{a}",
                    comm_address=a,
                    kind="single_phase",
                    register_digits=6,
                    tou=True,
                    state="installed",
                )
                for a in addrs
                if a not in existing
            ]
            Meter.objects.bulk_create(new, batch_size=5000)
            created += len(new)
            ids = list(Meter.objects.filter(comm_address__in=addrs).values_list("pk", flat=True))
            linked = set(TerminalMeter.objects.filter(meter_id__in=ids).values_list("meter_id", flat=True))
            TerminalMeter.objects.bulk_create(
                [TerminalMeter(terminal_id=tids[codes[t]], meter_id=i) for i in ids if i not in linked],
                batch_size=5000,
            )
    return created
