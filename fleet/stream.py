"""The JetStream streams the fleet reads and keeps, and the fleet's durable consumer.

Two streams, because NATS 2.9's MQTT listener handles a site's QoS 1 publish in two steps
(``server/mqtt.go``, ``mqttProcessPub``): it first publishes the message on its subject
(``parkguard.v1.…``) as plain NATS, which a stream stores only while that stream has a leader,
and then stores a copy in its own stream ``$MQTT_msgs`` (``$MQTT.msgs.parkguard.v1.…``) and
waits for that store before it sends the bridge its PUBACK. So:

- **the ingest reads** ``$MQTT_msgs``: the copy NATS stored before the site's Mosquitto was
  told "delivered". If that store fails (no leader, no quorum) NATS sends no PUBACK and
  Mosquitto sends the message again. ``$MQTT_msgs`` keeps a message only while a consumer
  wants it (interest retention), so our durable consumer must exist before any site bridges
  in, and a message stays there until the service acknowledges it after its commit.
- ``PARKGUARD`` captures ``parkguard.v1.>``: the fleet commands the service publishes (a
  JetStream publish needs a stream) and a 30-day copy of what the sites send. That copy is
  best effort: while PARKGUARD has no leader (4-9 s after the node that led it died) the plain
  publish is dropped, though NATS has acknowledged the message to the site. The fault test
  lost 200 events that way when the service read PARKGUARD (docs/fleet.md, failure model).

Both must exist before sites bridge in: ``parkguard fleet stream`` makes them (and the
consumer), and the service makes sure of them at every start.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from fleet.config import NatsSettings
from fleet.natsconf import SUBJECT_ROOT

SUBJECTS = f"{SUBJECT_ROOT}.>"
DAY_S = 86_400.0
#: NATS's own stream of stored MQTT QoS 1 messages, and the prefix of its subjects.
MQTT_STREAM = "$MQTT_msgs"
MQTT_PREFIX = "$MQTT.msgs."


@dataclass(frozen=True, slots=True)
class IngestSource:
    """Where the service's durable consumer reads: a stream, the subjects it takes from it,
    and the prefix to strip to get back the site's subject (``parkguard.v1.…``)."""

    stream: str
    subjects: str
    prefix: str = ""

    def subject(self, delivered: str) -> str:
        return delivered.removeprefix(self.prefix)


#: Production: what NATS stored before it acknowledged the site's publish.
MQTT_SOURCE = IngestSource(MQTT_STREAM, MQTT_PREFIX + SUBJECTS, MQTT_PREFIX)


def archive_source(settings: NatsSettings) -> IngestSource:
    """PARKGUARD itself: for the bench, whose publishers are not MQTT bridges."""
    return IngestSource(settings.stream, SUBJECTS)


def stream_config(settings: NatsSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.stream, subjects=[SUBJECTS], storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS, discard=DiscardPolicy.OLD,
        num_replicas=settings.replicas, max_age=settings.max_age_days * DAY_S,
        duplicate_window=120.0)


def mqtt_stream_config(settings: NatsSettings) -> StreamConfig:
    """Exactly what NATS 2.9 would create (it uses an existing one as it is): interest
    retention, file, replicated like ``mqtt { stream_replicas }`` in the node template."""
    return StreamConfig(
        name=MQTT_STREAM, subjects=[MQTT_PREFIX + ">"], storage=StorageType.FILE,
        retention=RetentionPolicy.INTEREST, num_replicas=settings.replicas)


def consumer_config(settings: NatsSettings, source: IngestSource = MQTT_SOURCE) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=settings.durable, ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL, ack_wait=settings.ack_wait_s,
        max_ack_pending=settings.max_ack_pending, filter_subject=source.subjects,
        max_deliver=-1)


async def ensure_stream(js: JetStreamContext, settings: NatsSettings) -> None:
    """Create PARKGUARD, ``$MQTT_msgs`` and the ingest consumer, or bring them to our
    settings (the consumer's ack wait and max ack pending)."""
    wanted = stream_config(settings)
    try:
        await js.stream_info(settings.stream)
    except NotFoundError:
        await js.add_stream(wanted)
    else:
        await js.update_stream(wanted)
    try:
        await js.stream_info(MQTT_STREAM)
    except NotFoundError:
        # Made by NATS once the first MQTT client connects; made here first, so the
        # consumer below exists before a site's first message (no interest, not kept).
        with contextlib.suppress(BadRequestError):  # a bridge's connect made it just now
            await js.add_stream(mqtt_stream_config(settings))
    await js.add_consumer(MQTT_STREAM, consumer_config(settings))
