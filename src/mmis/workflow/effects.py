"""Effect handlers: what a step does to the rest of the system when it is completed.

The engine is generic and sits below the business apps, so a higher app registers its handlers
by name (in its AppConfig.ready) and a step names the handler in its definition
(`"effect": "services.new_connection"`). A handler runs inside the transaction that completes
the task; if it raises `InvalidInput` nothing of the completion is kept. It may return a dict
merged into the instance data (e.g. the ids it created).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class EffectContext:
    instance: Any  # ProcessInstance
    task: Any  # Task
    step: Any  # rules.StepDef
    form: dict
    data: dict  # instance data including this step's form
    actor: Any  # User
    at: datetime


Handler = Callable[[EffectContext], dict | None]
_HANDLERS: dict[str, Handler] = {}


def register(name: str) -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        _HANDLERS[name] = fn
        return fn

    return wrap


def get(name: str) -> Handler | None:
    return _HANDLERS.get(name)


def names() -> list[str]:
    return sorted(_HANDLERS)
