"""MQTT plumbing shared by the listener, the simulator and remote commands (paho-mqtt 2.x)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

UP_TOPIC = "mmis/ami/+/up"
DOWN_TOPIC = "mmis/ami/+/down"


@dataclass(frozen=True)
class BrokerParams:
    host: str
    port: int
    username: str | None = None
    password: str | None = None


def broker_params(url: str | None = None) -> BrokerParams:
    if url is None:
        from django.conf import settings

        url = settings.MQTT_URL
    u = urlparse(url)
    if u.scheme not in ("mqtt", "tcp", ""):
        raise ValueError(f"unsupported MQTT URL scheme {u.scheme!r} (use mqtt://host:port)")
    return BrokerParams(u.hostname or "127.0.0.1", u.port or 1883, u.username, u.password)


def terminal_of(topic: str) -> str:
    """`mmis/ami/<terminal>/up` → `<terminal>` ('' when the topic has another shape)."""
    parts = topic.split("/")
    return parts[2] if len(parts) == 4 and parts[0] == "mmis" and parts[1] == "ami" else ""


def publish_once(topic: str, payload: dict[str, Any] | str | bytes, *, url: str | None = None) -> None:
    """Publish one message with QoS 1 on a short-lived connection (web and service processes)."""
    from paho.mqtt import publish

    p = broker_params(url)
    data = json.dumps(payload) if isinstance(payload, dict) else payload
    auth = {"username": p.username, "password": p.password} if p.username else None
    publish.single(topic, data, qos=1, hostname=p.host, port=p.port, auth=auth, keepalive=10)
