"""The wire contract: topic builders and parser, payload models, examples, signatures, the docs."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub
from pydantic import BaseModel, ValidationError

from parkguard.clock import utc_iso
from parkguard.errors import ContractError
from wire.contract import messages as m
from wire.contract import reference
from wire.contract import topics as t
from wire.contract.examples import EXAMPLES

SITE = "mall-b2"
SHANGHAI = ZoneInfo("Asia/Shanghai")
KEY = b"lane-in1-secret-key"

# Topic builders -------------------------------------------------------------

Builder = Callable[[str, str], str]

# builder, node it is given, topic DESIGN.md's table says it makes, kind parse_topic reports
BUILDERS: list[tuple[Builder, str, str, t.TopicKind]] = [
    (t.lane_event, "in1", "parkguard/v1/mall-b2/lane/in1/event", "lane_event"),
    (t.lane_state, "in1", "parkguard/v1/mall-b2/lane/in1/state", "lane_state"),
    (t.lane_cmd, "in1", "parkguard/v1/mall-b2/lane/in1/cmd", "lane_cmd"),
    (t.lane_decide, "out1", "parkguard/v1/mall-b2/lane/out1/decide", "lane_decide"),
    (t.lane_decide_reply, "out1", "parkguard/v1/mall-b2/lane/out1/decide/reply",
     "lane_decide_reply"),
    (t.sensor_reading, "flood-b2", "parkguard/v1/mall-b2/sensor/flood-b2/reading",
     "sensor_reading"),
    (t.sensor_state, "flood-b2", "parkguard/v1/mall-b2/sensor/flood-b2/state", "sensor_state"),
    (t.patrol_tap, "patrol-1", "parkguard/v1/mall-b2/patrol/patrol-1/tap", "patrol_tap"),
    (t.alarm, "fire", "parkguard/v1/mall-b2/alarm/fire", "alarm"),
    (t.alarm, "flood", "parkguard/v1/mall-b2/alarm/flood", "alarm"),
    (t.alert, "a-000123", "parkguard/v1/mall-b2/alert/a-000123", "alert"),
]
NODE_BUILDERS = [b for b in BUILDERS if b[3] != "alarm"]  # an alarm's node is a kind, not an id

BAD_IDS = [
    pytest.param("in+1", id="mqtt-single-level-wildcard"),
    pytest.param("in#", id="mqtt-multi-level-wildcard"),
    pytest.param("in/1", id="slash"),
    pytest.param("In1", id="upper-case"),
    pytest.param("", id="empty"),
    pytest.param("a" * 33, id="33-characters"),
]


@pytest.mark.parametrize(("build", "node", "expected", "kind"), BUILDERS,
                         ids=[f"{b[3]}-{b[1]}" for b in BUILDERS])
def test_topic_builder_makes_the_design_tree_form_and_parse_gives_back_its_parts(
    build: Builder, node: str, expected: str, kind: t.TopicKind
) -> None:
    topic = build(SITE, node)
    assert topic == expected
    assert t.parse_topic(topic) == t.Topic(site=SITE, kind=kind, node=node)


@pytest.mark.parametrize(("build", "node", "expected", "kind"), BUILDERS,
                         ids=[f"{b[3]}-{b[1]}" for b in BUILDERS])
@pytest.mark.parametrize("bad", BAD_IDS)
def test_topic_builder_refuses_bad_site_id_naming_it(
    build: Builder, node: str, expected: str, kind: t.TopicKind, bad: str
) -> None:
    with pytest.raises(ContractError) as caught:
        build(bad, node)
    assert repr(bad) in str(caught.value)
    assert "site" in str(caught.value)


@pytest.mark.parametrize(("build", "node", "expected", "kind"), NODE_BUILDERS,
                         ids=[f"{b[3]}-{b[1]}" for b in NODE_BUILDERS])
@pytest.mark.parametrize("bad", BAD_IDS)
def test_topic_builder_refuses_bad_node_id_naming_it(
    build: Builder, node: str, expected: str, kind: t.TopicKind, bad: str
) -> None:
    with pytest.raises(ContractError) as caught:
        build(SITE, bad)
    assert repr(bad) in str(caught.value)


def test_ids_of_exactly_32_characters_with_dash_and_underscore_are_accepted() -> None:
    longest = "a1-_" * 8
    assert len(longest) == 32
    topic = t.lane_event(longest, longest)
    assert t.parse_topic(topic) == t.Topic(site=longest, kind="lane_event", node=longest)


@pytest.mark.parametrize("kind", ["smoke", "Fire", "", "fire/b2", "+"])
def test_alarm_builder_refuses_unknown_alarm_kinds_naming_them(kind: str) -> None:
    with pytest.raises(ContractError) as caught:
        t.alarm(SITE, kind)
    assert repr(kind) in str(caught.value)


@pytest.mark.parametrize("topic", [
    pytest.param("parkguard/v1/mall-b2/alarm/smoke", id="unknown-alarm-kind"),
    pytest.param("parkguard/v1/mall-b2/lane/in1/unknown", id="unknown-lane-leaf"),
    pytest.param("parkguard/v1/mall-b2/lane/in1/event/extra", id="extra-level"),
    pytest.param("parkguard/v1/mall-b2/lane/in1", id="missing-leaf"),
    pytest.param("parkguard/v2/mall-b2/lane/in1/event", id="other-version"),
    pytest.param("carpark/v1/mall-b2/lane/in1/event", id="other-root"),
    pytest.param("parkguard/v1/mall-b2/kiosk/k1/event", id="unknown-branch"),
    pytest.param("parkguard/v1/Mall-B2/lane/in1/event", id="upper-case-site"),
    pytest.param("parkguard/v1/mall-b2/lane/IN1/event", id="upper-case-lane"),
    pytest.param("parkguard/v1/mall-b2/lane/+/event", id="wildcard-filter-not-a-topic"),
    pytest.param("/parkguard/v1/mall-b2/lane/in1/event", id="leading-slash"),
    pytest.param("", id="empty"),
])
def test_parse_topic_refuses_topics_outside_the_tree(topic: str) -> None:
    with pytest.raises(ContractError):
        t.parse_topic(topic)


@pytest.mark.parametrize(("subscription", "build", "node"), [
    (t.all_lane(SITE, "event"), t.lane_event, "in1"),
    (t.all_lane(SITE, "state"), t.lane_state, "out2"),
    (t.all_lane(SITE, "decide"), t.lane_decide, "out1"),
    (t.all_sensor(SITE, "reading"), t.sensor_reading, "flood-b2"),
    (t.all_sensor(SITE, "state"), t.sensor_state, "fire-panel"),
    (t.all_patrol_taps(SITE), t.patrol_tap, "patrol-1"),
    (t.all_alarms(SITE), t.alarm, "flood"),
    (t.all_alerts(SITE), t.alert, "a-1"),
])
def test_subscription_filter_matches_its_topics_and_not_other_sites(
    subscription: str, build: Builder, node: str
) -> None:
    assert topic_matches_sub(subscription, build(SITE, node))
    assert not topic_matches_sub(subscription, build("other-site", node))


def test_lane_event_filter_does_not_match_decide_replies() -> None:
    assert not topic_matches_sub(t.all_lane(SITE, "decide"), t.lane_decide_reply(SITE, "out1"))


# Examples and the topic table -----------------------------------------------

TABLE_MODELS: dict[str, tuple[str, type[BaseModel]]] = {
    model.__name__: (topic, model)
    for topic, _route, _qos, models, _what in reference.TOPIC_TABLE
    for model in models
}
# Which example field fills each placeholder of a TOPIC_TABLE topic.
PLACEHOLDER_FIELD = {"lane": "lane", "node": "node", "reader": "reader", "kind": "kind",
                     "id": "alert_id"}


def _topic_for(name: str) -> str:
    """The concrete topic an example travels on, from the table and the example's own id."""
    template, _model = TABLE_MODELS[name]
    example = EXAMPLES[name]
    values = {slot: str(example.get(field, "in1")) for slot, field in PLACEHOLDER_FIELD.items()}
    return f"parkguard/v1/{SITE}/{template.format(**values)}"


def test_every_model_in_the_topic_table_has_an_example_and_every_example_a_model() -> None:
    assert set(TABLE_MODELS) | {x.__name__ for x in reference.CARRIED} == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_validates_against_its_model_and_round_trips_json(name: str) -> None:
    model = getattr(m, name)
    assert issubclass(model, m.WireMessage)
    value = model.model_validate(EXAMPLES[name])
    assert model.from_json(value.to_json()) == value
    assert model.from_json(json.dumps(EXAMPLES[name], ensure_ascii=False)) == value


@pytest.mark.parametrize("name", sorted(TABLE_MODELS))
def test_example_decodes_on_its_table_topic_to_the_same_value(name: str) -> None:
    model = getattr(m, name)
    expected = model.model_validate(EXAMPLES[name])
    payload = json.dumps(EXAMPLES[name], ensure_ascii=False).encode("utf-8")
    decoded = m.decode(_topic_for(name), payload)
    assert type(decoded) is model
    assert decoded == expected
    assert m.decode(_topic_for(name), expected.to_json()) == expected


def test_payload_of_another_message_on_a_topic_is_refused() -> None:
    with pytest.raises(ContractError):
        m.decode(t.lane_event(SITE, "in1"), json.dumps(EXAMPLES["LaneState"]))


def test_decoded_messages_are_frozen() -> None:
    state = m.decode(t.lane_state(SITE, "in1"), json.dumps(EXAMPLES["LaneState"]))
    assert isinstance(state, m.LaneState)
    with pytest.raises(ValidationError):
        state.online = False


# Refusals -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TABLE_MODELS))
def test_payload_of_protocol_version_2_is_refused_naming_v(name: str) -> None:
    payload = json.dumps({**EXAMPLES[name], "v": 2})
    with pytest.raises(ContractError, match=r"\bv: "):
        getattr(m, name).from_json(payload)
    with pytest.raises(ContractError, match=r"\bv: "):
        m.decode(_topic_for(name), payload)


@pytest.mark.parametrize("name", sorted(TABLE_MODELS))
def test_payload_with_an_unknown_field_is_refused_naming_it(name: str) -> None:
    payload = json.dumps({**EXAMPLES[name], "colour": "red"})
    with pytest.raises(ContractError, match="colour"):
        getattr(m, name).from_json(payload)
    with pytest.raises(ContractError, match="colour"):
        m.decode(_topic_for(name), payload)


@pytest.mark.parametrize(("name", "field"), [
    (name, field)
    for name in sorted(EXAMPLES)
    for field in getattr(m, name).model_json_schema()["required"]
])
def test_payload_missing_a_required_field_is_refused_naming_it(name: str, field: str) -> None:
    payload = {k: v for k, v in EXAMPLES[name].items() if k != field}
    with pytest.raises(ContractError) as caught:
        getattr(m, name).from_json(json.dumps(payload))
    assert f"{field}: Field required" in str(caught.value)


def test_lane_event_missing_its_type_is_refused_naming_the_discriminator() -> None:
    payload = {k: v for k, v in EXAMPLES["Tailgate"].items() if k != "type"}
    with pytest.raises(ContractError, match="'type'"):
        m.decode(t.lane_event(SITE, "in1"), json.dumps(payload))


@pytest.mark.parametrize(("name", "topic", "field"), [
    ("Tailgate", t.lane_event(SITE, "in2"), "lane"),
    ("LaneState", t.lane_state(SITE, "in2"), "lane"),
    ("DecideRequest", t.lane_decide(SITE, "in2"), "lane"),
    ("SensorReading", t.sensor_reading(SITE, "fire-panel"), "node"),
    ("SensorState", t.sensor_state(SITE, "fire-panel"), "node"),
    ("PatrolTap", t.patrol_tap(SITE, "patrol-2"), "reader"),
    ("AlarmState", t.alarm(SITE, "flood"), "kind"),
    ("Alert", t.alert(SITE, "a-000999"), "alert_id"),
])
def test_payload_claiming_another_node_than_its_topic_is_refused(
    name: str, topic: str, field: str
) -> None:
    with pytest.raises(ContractError) as caught:
        m.decode(topic, json.dumps(EXAMPLES[name]))
    assert f"{field}={EXAMPLES[name][field]!r}" in str(caught.value)
    assert "does not match" in str(caught.value)


TOPICS_OF_EVERY_KIND = [
    t.lane_event(SITE, "in1"), t.lane_state(SITE, "in1"), t.lane_cmd(SITE, "in1"),
    t.lane_decide(SITE, "in1"), t.lane_decide_reply(SITE, "in1"),
    t.sensor_reading(SITE, "flood-b2"), t.sensor_state(SITE, "flood-b2"),
    t.patrol_tap(SITE, "patrol-1"), t.alarm(SITE, "fire"), t.alert(SITE, "a-000123"),
]


@pytest.mark.parametrize("payload", [
    b"", b"\xff\xfe\x00", b"not json", b"null", b"[]", b"42", b'"text"', b"{", b"{}",
    b'{"type": 5}', b'{"type": []}', b"[" * 10_000, '"\ud800"',
])
@pytest.mark.parametrize("topic", TOPICS_OF_EVERY_KIND)
def test_garbage_payloads_are_refused_with_contract_error(topic: str, payload: bytes) -> None:
    with pytest.raises(ContractError):
        m.decode(topic, payload)


@given(topic=st.sampled_from(TOPICS_OF_EVERY_KIND), payload=st.binary())
def test_decoding_arbitrary_bytes_only_ever_raises_contract_error(
    topic: str, payload: bytes
) -> None:
    try:
        m.decode(topic, payload)
    except ContractError:
        pass


@given(topic=st.sampled_from(TOPICS_OF_EVERY_KIND), payload=st.text())
def test_decoding_arbitrary_text_only_ever_raises_contract_error(topic: str, payload: str) -> None:
    try:
        m.decode(topic, payload)
    except ContractError:
        pass


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59.999-05:00", "0001-01-01T00:00:00+05:00"])
def test_time_out_of_range_after_conversion_to_utc_is_refused_with_contract_error(
    stamp: str,
) -> None:
    with pytest.raises(ContractError, match="ts"):
        m.decode(t.lane_state(SITE, "in1"), json.dumps({**EXAMPLES["LaneState"], "ts": stamp}))


# Times ----------------------------------------------------------------------


def test_non_utc_aware_time_is_converted_to_utc_and_sent_with_milliseconds_and_z() -> None:
    local = datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=SHANGHAI)
    state = m.LaneState(lane="in1", online=True, direction="entry", ts=local)
    assert state.ts == local.replace(microsecond=123000)  # kept as the wire carries it
    assert state.ts.utcoffset() == timedelta(0)
    assert (state.ts.hour, state.ts.minute) == (2, 0)
    assert json.loads(state.to_json())["ts"] == "2026-05-01T02:00:00.123Z"


def test_time_received_with_an_offset_is_converted_to_utc() -> None:
    payload = json.dumps({**EXAMPLES["LaneState"], "ts": "2026-05-01T10:00:00.500+08:00"})
    state = m.LaneState.from_json(payload)
    assert state.ts.utcoffset() == timedelta(0)
    assert state.ts == datetime(2026, 5, 1, 2, 0, 0, 500000, tzinfo=UTC)
    assert json.loads(state.to_json())["ts"] == "2026-05-01T02:00:00.500Z"


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValidationError):
        m.LaneState(lane="in1", online=True, direction="entry", ts=datetime(2026, 5, 1, 2, 0))
    with pytest.raises(ContractError, match=r"\bts: "):
        m.LaneState.from_json(json.dumps({**EXAMPLES["LaneState"], "ts": "2026-05-01T02:00:00"}))


# Money ----------------------------------------------------------------------

MONEY_FIELDS = [("Decision", "fee_fen"), ("Passed", "fee_fen"), ("PaymentCode", "fee_fen"),
                ("DecideReply", "fee_fen")]


@pytest.mark.parametrize(("name", "field"), MONEY_FIELDS)
@pytest.mark.parametrize("amount", [-1, -700, 1.5, 699.99])
def test_money_field_refuses_negative_and_fractional_amounts(
    name: str, field: str, amount: float
) -> None:
    with pytest.raises(ContractError, match=rf"\b{field}: "):
        getattr(m, name).from_json(json.dumps({**EXAMPLES[name], field: amount}))


@pytest.mark.parametrize(("name", "field"), MONEY_FIELDS)
def test_money_field_accepts_integer_fen(name: str, field: str) -> None:
    value = getattr(m, name).from_json(json.dumps({**EXAMPLES[name], field: 123456}))
    assert getattr(value, field) == 123456


@pytest.mark.parametrize("amount", [7.0, "700", True])
def test_money_field_refuses_json_that_is_not_an_integer(amount: Any) -> None:
    with pytest.raises(ContractError, match="fee_fen"):
        m.PaymentCode.from_json(json.dumps({**EXAMPLES["PaymentCode"], "fee_fen": amount}))


# Signed lane commands -------------------------------------------------------

ISSUED = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)


def _command() -> m.LaneCommand:
    return m.LaneCommand(
        command="open", args={"hold_s": 10}, reason="driver lost ticket", issuer="guard:wang",
        nonce="9f86d081884c7d65", issued=ISSUED, expires=ISSUED + timedelta(seconds=10),
    )


def test_signed_command_verifies_with_its_key() -> None:
    signed = _command().signed(KEY)
    assert len(signed.sig) == 64
    assert signed.signature_valid(KEY)


def test_unsigned_command_does_not_verify() -> None:
    assert not _command().signature_valid(KEY)


def test_signed_command_still_verifies_after_travelling_as_json() -> None:
    signed = _command().signed(KEY)
    received = m.decode(t.lane_cmd(SITE, "in1"), signed.to_json())
    assert isinstance(received, m.LaneCommand)
    assert received.signature_valid(KEY)


def test_signed_command_does_not_verify_with_another_key() -> None:
    assert not _command().signed(KEY).signature_valid(b"lane-in2-secret-key")


@pytest.mark.parametrize(("field", "tampered"), [
    ("command", "close"),
    ("args", {"hold_s": 600}),
    ("args", {"hold_s": 10, "display": "free"}),
    ("args", {}),
    ("nonce", "0123456789abcdef"),
    ("expires", utc_iso(ISSUED + timedelta(hours=10))),
    ("issued", utc_iso(ISSUED - timedelta(seconds=1))),
    ("issuer", "guard:li"),
    ("reason", "I said so"),
])
def test_any_change_to_a_signed_command_breaks_its_signature(field: str, tampered: Any) -> None:
    signed = _command().signed(KEY)
    wire = json.loads(signed.to_json())
    assert wire[field] != tampered
    changed = m.LaneCommand.from_json(json.dumps({**wire, field: tampered}))
    assert changed.sig == signed.sig
    assert not changed.signature_valid(KEY)


@pytest.mark.parametrize("expires", [ISSUED, ISSUED - timedelta(seconds=1)])
def test_command_that_expires_no_later_than_issued_is_refused(expires: datetime) -> None:
    with pytest.raises(ValidationError, match="expires must be later than issued"):
        m.LaneCommand(command="open", issuer="gateway", nonce="9f86d081884c7d65",
                      issued=ISSUED, expires=expires)
    wire = {**EXAMPLES["LaneCommand"], "expires": utc_iso(expires)}
    with pytest.raises(ContractError, match="expires"):
        m.LaneCommand.from_json(json.dumps(wire))


# Generated reference ----------------------------------------------------------


def test_protocol_reference_in_docs_is_generated_from_the_current_contract() -> None:
    current = reference.DOC_PATH.read_text(encoding="utf-8")
    assert current == reference.render(), (
        f"{reference.DOC_PATH} is out of date with wire/contract: "
        "run `parkguard contract docs` and commit the result"
    )


def test_protocol_reference_names_every_model_and_shows_its_example() -> None:
    rendered = reference.render()
    for name, example in EXAMPLES.items():
        assert f"### {name}\n" in rendered
        assert json.dumps(example, ensure_ascii=False, indent=2) in rendered


# Lane replicas and capacity (issue 6) -----------------------------------------

REPLICA_TOPICS = [t.lane_replica(SITE, "in1", part) for part in t.REPLICA_PARTS]


@pytest.mark.parametrize("part", t.REPLICA_PARTS)
def test_replica_topic_parses_to_its_lane_and_part(part: str) -> None:
    where = t.parse_topic(t.lane_replica(SITE, "in1", part))
    assert (where.kind, where.node, where.part) == ("lane_replica", "in1", part)


def test_replica_filter_matches_every_lane_of_one_part_only() -> None:
    watch = t.all_lane_replicas(SITE, "snapshot")
    assert topic_matches_sub(watch, t.lane_replica(SITE, "out2", "snapshot"))
    assert not topic_matches_sub(watch, t.lane_replica(SITE, "out2", "delta"))


def test_a_replica_part_without_a_model_is_refused_naming_it() -> None:
    with pytest.raises(ContractError, match="no message model"):
        m.decode(t.lane_replica(SITE, "in1", "sessions"), json.dumps(EXAMPLES["ReplicaDelta"]))


def test_a_snapshot_on_the_delta_topic_is_refused() -> None:
    with pytest.raises(ContractError):
        m.decode(t.lane_replica(SITE, "in1", "delta"), json.dumps(EXAMPLES["ReplicaSnapshot"]))


@pytest.mark.parametrize("name", ["ReplicaChunk", "ReplicaDelta", "CapacityState"])
def test_replica_of_another_site_is_refused_naming_the_site(name: str) -> None:
    with pytest.raises(ContractError, match="site='other'"):
        m.decode(_topic_for(name), json.dumps({**EXAMPLES[name], "site": "other"}))


def test_a_tariff_that_does_not_match_its_hash_is_refused() -> None:
    snapshot = EXAMPLES["ReplicaSnapshot"]
    damaged = {**snapshot, "tariff": {**snapshot["tariff"], "text": "tampered"}}
    with pytest.raises(ContractError, match="sha256 does not match"):
        m.ReplicaSnapshot.from_json(json.dumps(damaged))


def test_a_pass_with_the_holders_phone_is_refused_so_it_never_reaches_a_lane() -> None:
    snapshot = EXAMPLES["ReplicaSnapshot"]
    leaky = {**snapshot, "passes": [{**snapshot["passes"][0], "phone": "13812345678"}]}
    with pytest.raises(ContractError, match="phone"):
        m.ReplicaSnapshot.from_json(json.dumps(leaky))


def test_delta_data_of_another_kind_is_refused_naming_data_and_the_kind() -> None:
    delta = {**EXAMPLES["ReplicaDelta"], "kind": "session_closed"}
    with pytest.raises(ContractError, match=r"data: .*not session_closed data"):
        m.ReplicaDelta.from_json(json.dumps(delta))


def test_delta_data_is_decoded_to_the_record_its_kind_names() -> None:
    delta = m.decode(t.lane_replica(SITE, "in1", "delta"), json.dumps(EXAMPLES["ReplicaDelta"]))
    assert isinstance(delta, m.ReplicaDelta)
    assert isinstance(delta.data, m.ReplicaSession)
    assert delta.data.plate == "粤B54321"


@pytest.mark.parametrize(("field", "value", "says"), [
    ("free", 9, "free is 9"),
    ("full", False, "full is False"),
])
def test_capacity_that_contradicts_itself_is_refused(field: str, value: Any, says: str) -> None:
    with pytest.raises(ContractError, match=says):
        m.CapacityState.from_json(json.dumps({**EXAMPLES["CapacityState"], field: value}))


@pytest.mark.parametrize("payload", [b"", b"not json", b"{}", b"[]", b'{"kind": 5}'])
@pytest.mark.parametrize("topic", REPLICA_TOPICS)
def test_garbage_on_replica_topics_is_refused_with_contract_error(
    topic: str, payload: bytes
) -> None:
    with pytest.raises(ContractError):
        m.decode(topic, payload)


@given(topic=st.sampled_from(REPLICA_TOPICS), payload=st.text())
def test_decoding_arbitrary_text_on_replica_topics_only_raises_contract_error(
    topic: str, payload: str
) -> None:
    try:
        m.decode(topic, payload)
    except ContractError:
        pass
