"""The gateway's retained ``gateway/availability``: ``online`` on every connect, ``offline``
on a clean stop, and ``offline`` as its Last Will when it dies or its network goes.

Why: a lane that asks a gateway which is gone waits out its whole decide deadline
(300 ms) for every car before it decides from its replica. With this topic the lanes know,
and decide at once (docs/lane.md, "Offline decisions"). The same retained state is what
Home Assistant's MQTT availability reads (``value_template: "{{ value_json.state }}"``).

The Last Will must be given when the connection is built (:func:`availability_will`), so
:class:`~gateway.app.GatewayApp` hands it to its :class:`~wire.mqtt.MqttBus`; a bus handed
in by a test or the simulator brings its own will, or none (the lanes then behave as if the
gateway never said anything: they ask, and wait out the deadline).
"""

from __future__ import annotations

import logging
import threading
from typing import Literal

from parkguard.clock import Clock
from parkguard.errors import BrokerError
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import GatewayAvailability
from wire.mqtt import Will

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
"""How long a clean stop waits for the broker to take the retained ``offline``."""


def availability_will(site: str, clock: Clock) -> Will:
    """The retained ``offline`` the broker publishes if the gateway vanishes; stamped now,
    when the will is registered (the broker cannot know when the gateway died)."""
    state = GatewayAvailability(site=site, state="offline", ts=clock.now())
    return Will(topics.gateway_availability(site), state.to_json(), qos=1, retain=True)


class Availability:
    """Says ``online`` after every (re)connect of ``bus`` and ``offline`` on :meth:`stop`."""

    def __init__(self, bus: Bus, site: str, clock: Clock) -> None:
        self._bus = bus
        self._site = site
        self._clock = clock
        self._topic = topics.gateway_availability(site)
        self._stopped = threading.Event()

    def start(self) -> None:
        """Before or after the bus starts: ``online`` now if connected, and on each connect."""
        self._bus.when_connected(self._online)
        if self._bus.connected.is_set():
            self._online()

    def _online(self) -> None:
        if self._stopped.is_set():
            return  # a reconnect racing a clean stop must not undo the 'offline'
        self._bus.publish(self._topic, self._state("online"), retain=True)

    def stop(self) -> None:
        """A clean goodbye has no Last Will: publish the retained ``offline`` ourselves, and
        wait until the broker has it (then the bus may disconnect)."""
        self._stopped.set()
        if not self._bus.connected.is_set():
            return  # the broker is gone too; it kept whatever it last had
        try:
            self._bus.publish_and_wait(self._topic, self._state("offline"), retain=True,
                                       timeout=STOP_TIMEOUT_S)
        except BrokerError as error:
            log.warning("gateway: 'offline' not acknowledged on %s: %s", self._topic, error)

    def _state(self, state: Literal["online", "offline"]) -> GatewayAvailability:
        return GatewayAvailability(site=self._site, state=state, ts=self._clock.now())
