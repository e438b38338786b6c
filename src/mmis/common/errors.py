"""One error shape everywhere: a list of (path, message), as in `{"errors": [{"path", "message"}]}`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class InvalidInput(Exception):
    """Input that breaks a rule; carries every bad field found, each with its path and reason."""

    def __init__(self, errors: list[FieldError] | FieldError | str, path: str = "") -> None:
        if isinstance(errors, str):
            errors = [FieldError(path, errors)]
        elif isinstance(errors, FieldError):
            errors = [errors]
        self.errors: list[FieldError] = list(errors)
        super().__init__("; ".join(f"{e.path}: {e.message}" if e.path else e.message for e in self.errors))

    def prefixed(self, prefix: str) -> InvalidInput:
        """The same errors with `prefix` in front of every path (`[1]` + `usage.kwh` → `[1].usage.kwh`)."""
        out = []
        for e in self.errors:
            if not e.path:
                out.append(FieldError(prefix, e.message))
            elif e.path.startswith("["):
                out.append(FieldError(prefix + e.path, e.message))
            else:
                out.append(FieldError(f"{prefix}.{e.path}", e.message))
        return InvalidInput(out)

    def as_dict(self) -> dict[str, list[dict[str, str]]]:
        return {"errors": [e.as_dict() for e in self.errors]}


def join_path(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


class NotFound(Exception):
    """No such row for this user: it does not exist or lies outside the user's data scope.
    Interfaces answer 404 in both cases, never 403, so ids cannot be probed."""
