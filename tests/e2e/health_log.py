"""Mailgate's structured log (``log: {format: json}``) as the health tests read it: the
health view logs every transition (``backend health changed`` with backend, from, to and
reason), which is how a test sees "marked down" without the admin API."""

from __future__ import annotations

import json
import time

from mailgate_proc import Mailgate


def log_events(mailgate: Mailgate) -> list[dict]:
    """Every JSON log event mailgate wrote so far (needs ``log: {format: json}``)."""
    try:
        text = mailgate.out_path.read_text(errors="replace")
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
    return events


def health_transitions(mailgate: Mailgate, backend: str | None = None) -> list[dict]:
    """The health view's ``backend health changed`` events (backend, from, to, reason)."""
    return [e for e in log_events(mailgate)
            if e.get("message") == "backend health changed"
            and (backend is None or e.get("backend") == backend)]


def wait_transition(mailgate: Mailgate, backend: str, to: str | tuple[str, ...], timeout: float,
                    after: int = 0, poll: float = 0.05) -> tuple[dict, float]:
    """Wait for ``backend``'s health to change to ``to`` (a transition beyond the first
    ``after`` ones of that backend); returns the event and ``time.monotonic()`` when it was
    seen (at most ``poll`` late)."""
    wanted = (to,) if isinstance(to, str) else tuple(to)
    deadline = time.monotonic() + timeout
    while True:
        for event in health_transitions(mailgate, backend)[after:]:
            if event.get("to") in wanted:
                return event, time.monotonic()
        if time.monotonic() >= deadline:
            raise AssertionError(f"{backend} did not go {to} within {timeout}s; transitions: "
                                 f"{health_transitions(mailgate, backend)}\n{mailgate.output()}")
        time.sleep(poll)
