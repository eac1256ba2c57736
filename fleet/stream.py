"""The JetStream stream that keeps every site's subjects, and the fleet's durable consumer.

The stream must exist before sites bridge in (a subject no stream captures is dropped by NATS
at once): ``parkguard fleet stream`` makes it, and the service makes sure of it at start.
File storage, replicated on ``replicas`` nodes, so one node lost loses nothing acknowledged.
"""

from __future__ import annotations

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
from nats.js.errors import NotFoundError

from fleet.config import NatsSettings
from fleet.natsconf import SUBJECT_ROOT

SUBJECTS = f"{SUBJECT_ROOT}.>"
DAY_S = 86_400.0


def stream_config(settings: NatsSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.stream, subjects=[SUBJECTS], storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS, discard=DiscardPolicy.OLD,
        num_replicas=settings.replicas, max_age=settings.max_age_days * DAY_S,
        duplicate_window=120.0)


def consumer_config(settings: NatsSettings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=settings.durable, ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL, ack_wait=settings.ack_wait_s,
        max_ack_pending=settings.max_ack_pending, filter_subject=SUBJECTS,
        max_deliver=-1)


async def ensure_stream(js: JetStreamContext, settings: NatsSettings) -> None:
    """Create the stream, or bring an existing one to our settings."""
    wanted = stream_config(settings)
    try:
        await js.stream_info(settings.stream)
    except NotFoundError:
        await js.add_stream(wanted)
        return
    await js.update_stream(wanted)
