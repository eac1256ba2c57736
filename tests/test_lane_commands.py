"""Signed lane commands end to end: the control room opens a barrier, nobody else can.

The verifier is pure logic and is tested on its own (including a property test);
the lane is tested on mock pins against the real, locked-down Mosquitto, with the
gateway's real key ring from the provisioned test site.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from firmware.lane.commands import CommandVerifier
from firmware.lane.config import CommandSettings, LaneConfig
from firmware.lane.node import LaneNode
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.lanes.commands import LaneCommander, LaneCommandError
from gateway.records.audit import AuditLog, verify
from parkguard.clock import ManualClock
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.driver import SimulatedLaneWiring
from simulator.site import settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually, give_the_lane_time_to_misbehave
from wire.contract import topics
from wire.contract.messages import CommandName, LaneCommand
from wire.mqtt import MqttBus

SITE = TEST_SITE
START = SITE_START
KEY = bytes(range(32))
integration = pytest.mark.integration


def command(name: CommandName = "open", *, key: bytes = KEY, lane: str = "in1",
            issued: datetime = START, valid_s: float = 30, nonce: str = "ab" * 16,
            reason: str = "help button: ticket jammed", **args: Any) -> LaneCommand:
    return LaneCommand(
        command=name, args={"lane": lane, **args}, reason=reason,
        issuer="guard:0042", nonce=nonce, issued=issued,
        expires=issued + timedelta(seconds=valid_s),
    ).signed(key)


# The verifier on its own ----------------------------------------------------------------


def test_a_signed_current_command_is_accepted_once_and_then_refused_as_replayed() -> None:
    verifier = CommandVerifier(KEY, ManualClock(START), "in1")
    signed = command()
    assert verifier.check(signed).accepted
    verdict = verifier.check(signed)
    assert (verdict.accepted, verdict.reason) == (False, "replayed")


@pytest.mark.parametrize(("issued_offset_s", "valid_s", "reason"), [
    pytest.param(-60, 30, "expired", id="expired-long-ago"),
    pytest.param(-35, 30, "expired", id="expired-beyond-the-skew"),
    pytest.param(60, 30, "not_yet_valid", id="issued-in-the-future"),
    pytest.param(0, 3600, "malformed", id="window-absurdly-long"),
])
def test_commands_outside_their_time_window_are_refused(
    issued_offset_s: float, valid_s: float, reason: str
) -> None:
    verifier = CommandVerifier(KEY, ManualClock(START), "in1", skew_s=5)
    verdict = verifier.check(command(issued=START + timedelta(seconds=issued_offset_s),
                                     valid_s=valid_s))
    assert (verdict.accepted, verdict.reason) == (False, reason)


def test_a_few_seconds_of_clock_skew_are_tolerated_either_way() -> None:
    verifier = CommandVerifier(KEY, ManualClock(START), "in1", skew_s=5)
    ahead = command(issued=START + timedelta(seconds=3), nonce="01" * 16)
    just_expired = command(issued=START - timedelta(seconds=32), nonce="02" * 16)
    assert verifier.check(ahead).accepted
    assert verifier.check(just_expired).accepted


def test_a_command_signed_with_another_key_or_for_another_lane_is_refused() -> None:
    verifier = CommandVerifier(KEY, ManualClock(START), "in1")
    other_key = verifier.check(command(key=bytes(32)))
    other_lane = verifier.check(command(lane="in2"))
    assert (other_key.reason, other_lane.reason) == ("bad_signature", "wrong_lane")


def test_a_payload_that_is_no_command_is_malformed() -> None:
    verifier = CommandVerifier(KEY, ManualClock(START), "in1")
    assert verifier.check_payload(b'{"command": "open"}').reason == "malformed"
    assert verifier.check_payload(b"\xff").reason == "malformed"
    assert verifier.check(command("display")).reason == "malformed"  # no text to show


def test_the_replay_cache_forgets_a_nonce_once_its_command_has_expired() -> None:
    clock = ManualClock(START)
    verifier = CommandVerifier(KEY, clock, "in1", skew_s=5)
    signed = command()
    assert verifier.check(signed).accepted
    clock.advance(timedelta(seconds=36))
    verifier.check(command(issued=clock.now(), nonce="cd" * 16))
    assert verifier.remembered == 1  # only the new one
    assert verifier.check(signed).reason == "expired"  # the old one is still refused


def test_a_full_replay_cache_refuses_too_much_rather_than_let_a_replay_in() -> None:
    verifier = CommandVerifier(KEY, ManualClock(START), "in1", max_remembered=2)
    first, second, third = (command(nonce=f"{n:032x}", valid_s=10 + n) for n in range(3))
    assert all(verifier.check(c).accepted for c in (first, second, third))
    assert verifier.remembered == 2
    assert verifier.check(first).reason == "replayed"  # forgotten, still refused


SIGNED_WIRE = command(reason="帮助按钮: ticket jammed").to_json()  # multi-byte text too


@settings(max_examples=300)
@given(data=st.data())
def test_any_single_byte_change_to_a_signed_command_is_refused(data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(SIGNED_WIRE) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != SIGNED_WIRE[position]),
                      label="byte")
    changed = SIGNED_WIRE[:position] + bytes([value]) + SIGNED_WIRE[position + 1:]
    # A lane that has already obeyed the original refuses every variant ...
    seen_it = CommandVerifier(KEY, ManualClock(START), "in1")
    assert seen_it.check_payload(SIGNED_WIRE).accepted
    assert not seen_it.check_payload(changed).accepted
    # ... and one that never saw it obeys a variant only if it is the very same order
    # spelled differently (e.g. ``t`` for ``T`` in a time), whose nonce is then spent.
    fresh = CommandVerifier(KEY, ManualClock(START), "in1")
    verdict = fresh.check_payload(changed)
    if verdict.accepted:
        assert verdict.command == LaneCommand.from_json(SIGNED_WIRE)
        assert fresh.check_payload(SIGNED_WIRE).reason == "replayed"


# One lane on mock pins, the real broker -------------------------------------------------


@dataclass
class Lane:
    node: LaneNode
    pins: SimulatedLaneWiring
    camera: SimulatedCamera
    clock: ManualClock


def lane_key(test_site: ProvisionResult, lane: str) -> bytes:
    key = test_site.device(f"lane-{lane}").hmac_key
    assert key is not None
    return key


@contextmanager
def start_lane(broker: MosquittoBroker, lane: str, direction: str, clock: ManualClock,
               key: bytes | None) -> Iterator[Lane]:
    config = LaneConfig(
        site=SITE, lane=lane, direction=direction,  # type: ignore[arg-type]
        broker=settings_of(broker.address(f"lane-{lane}")),
        commands=CommandSettings(hmac_key=None if key is None else key.hex()),
    )
    factory = MockFactory()
    camera = SimulatedCamera(clock=clock)
    # The lane subscribes to its commands before it says it is online (same connection,
    # in order), so once a watcher has seen it online a command cannot be missed.
    with Recorder(broker, topics.lane_state(SITE, lane), device="monitor-watch2") as state:
        node = LaneNode(config, clock=clock, camera=camera, reader=GroundTruthReader(),
                        pin_factory=factory).start()
        eventually(lambda: any(json.loads(p)["online"] for p in state.payloads()),
                   what="lane online")
    try:
        yield Lane(node, SimulatedLaneWiring(config, factory), camera, clock)
    finally:
        node.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def in1(broker: MosquittoBroker, test_site: ProvisionResult,
        clock: ManualClock) -> Iterator[Lane]:
    with start_lane(broker, "in1", "entry", clock, lane_key(test_site, "in1")) as lane:
        yield lane


@pytest.fixture
def events(broker: MosquittoBroker) -> Iterator[Recorder]:
    with Recorder(broker, topics.all_lane(SITE, "event"), device="monitor-watch1") as recorder:
        yield recorder


@pytest.fixture
def gateway_bus(broker: MosquittoBroker) -> Iterator[MqttBus]:
    with MqttBus(broker.address("gateway"), client_id="gateway") as bus:
        yield bus


@pytest.fixture
def audit(tmp_path: Path, clock: ManualClock) -> AuditLog:
    return AuditLog(sqlite_utils.Database(tmp_path / "audit.db"), clock=clock)


@pytest.fixture
def commander(gateway_bus: MqttBus, test_site: ProvisionResult, clock: ManualClock,
              audit: AuditLog) -> LaneCommander:
    return LaneCommander(gateway_bus, SITE, test_site.device("gateway").lane_keys, clock, audit)


def of_type(recorder: Recorder, kind: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, recorder.payloads()) if e["type"] == kind]


def send(bus: MqttBus, lane: str, payload: bytes) -> None:
    bus.publish_and_wait(topics.lane_cmd(SITE, lane), payload)


@integration
def test_a_guard_opens_for_a_refused_car_and_the_barrier_closes_only_behind_it(
    broker: MosquittoBroker, test_site: ProvisionResult, tmp_path: Path, events: Recorder
) -> None:
    clock = ManualClock(START)
    config = GatewayConfig(site=SITE, database=tmp_path / "gateway.db",
                           broker=settings_of(broker.address("gateway")))
    with GatewayApp(config, clock=clock) as app:
        commander = LaneCommander(app.bus, SITE, test_site.device("gateway").lane_keys, clock,
                                  app.audit)
        with start_lane(broker, "out1", "exit", clock, lane_key(test_site, "out1")) as lane:
            pins = lane.pins
            lane.camera.show("粤B99999")  # never came in: the gateway refuses it
            pins.arming.drive_high()
            eventually(lambda: bool(of_type(events, "decision")), what="the refusal")
            assert of_type(events, "decision")[0]["reason"] == "no_entry_record"
            give_the_lane_time_to_misbehave()
            assert not pins.relay.state

            order = app.service.call(lambda: commander.open(
                "out1", actor="guard:0042", reason="help button: lost ticket, paid cash"))
            eventually(lambda: bool(pins.relay.state), what="barrier up on the guard's word")
            eventually(lambda: len(of_type(events, "decision")) == 2, what="manual decision")
            manual = of_type(events, "decision")[-1]
            assert (manual["reason"], manual["decided_by"], manual["plate"]) == (
                "manual_open", "gateway", "粤B99999")
            assert manual["correlation_id"] == order.nonce

            pins.safety.drive_high()
            pins.arming.drive_low()
            for _ in range(3):  # however long the car stands under the boom
                clock.advance(timedelta(minutes=5))
                give_the_lane_time_to_misbehave()
                assert pins.relay.state, "barrier lowered onto a vehicle"
            pins.safety.drive_low()
            eventually(lambda: not pins.relay.state, what="barrier down behind the car")
            eventually(lambda: bool(of_type(events, "passed")), what="passed event")
            assert of_type(events, "passed")[0]["correlation_id"] == order.nonce
        entries = [e for e in app.audit.entries() if e.action == "lane.open"]
        assert [(e.actor, e.subject, e.reason) for e in entries] == [
            ("guard:0042", "lane:out1", "help button: lost ticket, paid cash")]
        assert isinstance(entries[0].after, dict) and entries[0].after["nonce"] == order.nonce
        assert app.audit.verify().ok


@integration
def test_a_guard_can_open_before_the_car_reaches_the_loops(
    in1: Lane, commander: LaneCommander, events: Recorder
) -> None:
    commander.open("in1", actor="guard:0042", reason="delivery van waved in")
    pins = in1.pins
    eventually(lambda: bool(pins.relay.state), what="barrier up")
    give_the_lane_time_to_misbehave()
    assert pins.relay.state, "barrier closed before the car came"
    pins.arming.drive_high()
    pins.safety.drive_high()
    pins.arming.drive_low()
    pins.safety.drive_low()
    eventually(lambda: not pins.relay.state, what="barrier down behind the van")
    eventually(lambda: bool(of_type(events, "passed")), what="passed event")
    give_the_lane_time_to_misbehave()
    assert len(of_type(events, "passed")) == 1
    assert not of_type(events, "vehicle_detected"), "the van was served twice"


def _bad_signature(_lane: Lane, key: bytes) -> bytes:
    return command(key=bytes(reversed(key))).to_json()


def _other_lanes_key(_lane: Lane, _key: bytes) -> bytes:
    return command(key=bytes(32)).to_json()


def _expired(lane: Lane, key: bytes) -> bytes:
    return command(key=key, issued=lane.clock.now() - timedelta(seconds=60)).to_json()


def _not_yet_valid(lane: Lane, key: bytes) -> bytes:
    return command(key=key, issued=lane.clock.now() + timedelta(minutes=10)).to_json()


def _garbage(_lane: Lane, _key: bytes) -> bytes:
    return b'{"command": "open", "please": true}'


@integration
@pytest.mark.parametrize(("forge", "reason"), [
    pytest.param(_bad_signature, "bad_signature", id="bad-signature"),
    pytest.param(_other_lanes_key, "bad_signature", id="another-key"),
    pytest.param(_expired, "expired", id="expired"),
    pytest.param(_not_yet_valid, "not_yet_valid", id="not-yet-valid"),
    pytest.param(_garbage, "malformed", id="malformed"),
])
def test_a_bad_command_is_reported_and_the_barrier_does_not_move(
    in1: Lane, test_site: ProvisionResult, gateway_bus: MqttBus, events: Recorder,
    forge: Any, reason: str,
) -> None:
    send(gateway_bus, "in1", forge(in1, lane_key(test_site, "in1")))
    eventually(lambda: bool(of_type(events, "fault")), what="fault event")
    fault = of_type(events, "fault")[0]
    assert fault["code"] == "command_rejected"
    assert fault["detail"].startswith(f"{reason}:")
    give_the_lane_time_to_misbehave()
    assert not in1.pins.relay.state
    assert not of_type(events, "barrier") and not of_type(events, "decision")
    assert in1.node.controller.commands_done == 0


@integration
def test_a_replayed_open_is_refused_after_the_first_one_was_obeyed(
    in1: Lane, commander: LaneCommander, gateway_bus: MqttBus, events: Recorder
) -> None:
    order = commander.open("in1", actor="guard:0042", reason="help button")
    pins = in1.pins
    eventually(lambda: bool(pins.relay.state), what="barrier up")
    pins.arming.drive_high()
    pins.safety.drive_high()
    pins.arming.drive_low()
    pins.safety.drive_low()
    eventually(lambda: not pins.relay.state, what="barrier down")
    eventually(lambda: len(of_type(events, "barrier")) == 2, what="barrier open and closed")
    barrier_events = 2

    send(gateway_bus, "in1", order.to_json())  # recorded off the wire and played back
    eventually(lambda: bool(of_type(events, "fault")), what="fault event")
    assert of_type(events, "fault")[0]["detail"].startswith("replayed:")
    give_the_lane_time_to_misbehave()
    assert not pins.relay.state
    assert len(of_type(events, "barrier")) == barrier_events
    assert len(of_type(events, "decision")) == 1


@integration
def test_a_close_while_a_car_stands_under_the_boom_waits_until_the_loop_is_clear(
    in1: Lane, commander: LaneCommander, events: Recorder
) -> None:
    pins = in1.pins
    commander.hold_open("in1", actor="guard:0042", reason="fire drill: let cars out freely")
    eventually(lambda: bool(pins.relay.state), what="barrier held up")
    pins.safety.drive_high()  # a car stops under the boom
    commander.close("in1", actor="guard:0042", reason="drill over")
    eventually(lambda: in1.node.controller.commands_done == 2, what="the close taken up")
    for _ in range(3):
        in1.clock.advance(timedelta(minutes=10))
        give_the_lane_time_to_misbehave()
        assert pins.relay.state, "barrier lowered onto a vehicle"
    pins.safety.drive_low()
    eventually(lambda: not pins.relay.state, what="barrier down once the loop is clear")
    eventually(lambda: any(e["cause"] == "command_close" for e in of_type(events, "barrier")),
               what="barrier closed event")


@integration
def test_a_held_open_barrier_stays_up_for_passing_cars_until_closed(
    in1: Lane, commander: LaneCommander, events: Recorder
) -> None:
    pins = in1.pins
    commander.hold_open("in1", actor="guard:0042", reason="evacuation")
    eventually(lambda: bool(pins.relay.state), what="barrier held up")
    eventually(lambda: in1.node.controller.state().mode == "free_open", what="mode")
    pins.safety.drive_high()
    pins.safety.drive_low()
    give_the_lane_time_to_misbehave()
    assert pins.relay.state
    commander.close("in1", actor="guard:0042", reason="evacuation over")
    eventually(lambda: not pins.relay.state, what="barrier down")
    assert in1.node.controller.state().mode == "normal"


@integration
def test_a_display_command_sets_the_lane_display_text(
    in1: Lane, test_site: ProvisionResult, gateway_bus: MqttBus
) -> None:
    order = command("display", key=lane_key(test_site, "in1"), zh="请稍候 保安马上到",
                    en="Please wait: a guard is coming")
    send(gateway_bus, "in1", order.to_json())
    eventually(lambda: in1.node.controller.display is not None, what="display text")
    shown = in1.node.controller.display
    assert shown is not None and shown.zh == "请稍候 保安马上到"


@integration
def test_a_lane_without_a_key_refuses_even_a_correctly_signed_command(
    broker: MosquittoBroker, test_site: ProvisionResult, clock: ManualClock,
    gateway_bus: MqttBus, events: Recorder
) -> None:
    with start_lane(broker, "in2", "entry", clock, key=None) as lane:
        send(gateway_bus, "in2", command(key=lane_key(test_site, "in2"), lane="in2").to_json())
        eventually(lambda: bool(of_type(events, "fault")), what="fault event")
        assert of_type(events, "fault")[0]["code"] == "command_rejected"
        assert not lane.pins.relay.state


# The gateway's side ---------------------------------------------------------------------


def test_the_commander_refuses_an_order_without_a_reason_or_for_an_unknown_lane(
    test_site: ProvisionResult, audit: AuditLog, clock: ManualClock
) -> None:
    class NoBus:
        def publish(self, *_args: Any, **_kw: Any) -> None:
            raise AssertionError("nothing may be published")

    commander = LaneCommander(NoBus(), SITE,  # type: ignore[arg-type]
                              test_site.device("gateway").lane_keys, clock, audit)
    with pytest.raises(LaneCommandError, match="say why"):
        commander.open("in1", actor="guard:0042", reason="  ")
    with pytest.raises(LaneCommandError, match="unknown lane 'z9'"):
        commander.open("z9", actor="guard:0042", reason="help button")
    assert list(audit.entries()) == []


@integration
def test_each_order_is_audited_with_its_reason_and_the_chain_verifies(
    commander: LaneCommander, audit: AuditLog
) -> None:
    opened = commander.open("in1", actor="guard:0042", reason="help button: card jammed")
    commander.hold_open("out1", actor="captain:007", reason="fire alarm test")
    commander.close("out1", actor="captain:007", reason="test over")
    rows = [(e.actor, e.action, e.subject, e.reason) for e in audit.entries()]
    assert rows == [
        ("guard:0042", "lane.open", "lane:in1", "help button: card jammed"),
        ("captain:007", "lane.hold_open", "lane:out1", "fire alarm test"),
        ("captain:007", "lane.close", "lane:out1", "test over"),
    ]
    assert opened.expires - opened.issued == timedelta(seconds=30)
    assert verify(audit.db).ok
