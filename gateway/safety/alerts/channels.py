"""Where alert messages go: the notifier seam (Apprise in production), the bus publisher,
and the courier thread that sends them outside the database transaction."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from gateway.safety.alerts.errors import NotifyError
from wire.contract.messages import WireMessage

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """Sends one message to one channel address; raises :class:`NotifyError` if refused."""

    def send(self, url: str, title: str, body: str) -> None: ...


class AppriseNotifier:
    """Any Apprise URL: ``dingtalk://``, ``wecombot://``, ``feishu://``, ``mailto://``,
    ``mailtos://``, ``json://``, ``ntfy://`` ..."""

    def send(self, url: str, title: str, body: str) -> None:
        import apprise  # a heavy import: only where messages leave

        sender = apprise.Apprise()
        if not sender.add(url):
            raise NotifyError(f"not a usable Apprise URL: {_redact(url)}")
        if not sender.notify(title=title, body=body):
            raise NotifyError(f"{_redact(url).split(':', 1)[0]} did not take the message")


class Publisher(Protocol):
    """What the desk needs of the bus (``MqttBus`` fits)."""

    def publish(self, topic: str, payload: bytes | WireMessage, *, qos: int = 1,
                retain: bool = False) -> object: ...


def _redact(url: str) -> str:
    """A channel URL fit for a log or a table: scheme and host, no tokens or passwords."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}" if rest else scheme


@dataclass(frozen=True, slots=True)
class _Outgoing:
    notification_id: int
    url: str
    title: str
    body: str


class _Courier:
    """Sends on a thread of its own, so a slow channel never holds the gateway's worker;
    each outcome is recorded through ``record`` (on the worker: ``Gateway.call``)."""

    def __init__(self, notifier: Notifier,
                 record: Callable[[int, str | None], None],
                 run_on_owner: Callable[[Callable[[], None]], object]) -> None:
        self._notifier = notifier
        self._record = record
        self._owner = run_on_owner
        self._queue: queue.Queue[_Outgoing | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="alert-courier", daemon=True)
        self._thread.start()

    def submit(self, item: _Outgoing) -> None:
        self._queue.put(item)

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            error = _send(self._notifier, item)
            try:
                self._owner(partial(self._record, item.notification_id, error))
            except Exception:
                log.exception("alerts: outcome of notification %d not recorded",
                              item.notification_id)


def _send(notifier: Notifier, item: _Outgoing) -> str | None:
    try:
        notifier.send(item.url, item.title, item.body)
    except Exception as error:  # any channel failure is an outcome, never a crash
        log.warning("alerts: notification %d to %s failed: %s", item.notification_id,
                    _redact(item.url), error)
        return f"{type(error).__name__}: {error}"[:500]
    return None
