"""Signed lane commands end to end: the control room opens a barrier, nobody else can.

The verifier is pure logic and is tested on its own (including a property test);
the lane is tested on mock pins with the gateway's real key ring from the provisioned test
site: on the in-memory bus and a manual clock (no sleeps), and once end to end against the
real, locked-down Mosquitto and the gateway.
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
from pydantic import SecretStr

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from firmware.lane.commands import CommandVerifier
from firmware.lane.config import CameraSettings, CommandSettings, LaneConfig
from firmware.lane.journal import Journal
from firmware.lane.node import LaneNode
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.lanes.commands import LaneCommander, LaneCommandError
from gateway.records.audit import AuditLog, verify
from gateway.storage.migrations import migrate
from parkguard.clock import ManualClock
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.driver import SimulatedLaneWiring
from simulator.site import settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually
from tests.lane_harness import MemoryLane
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import CommandName, LaneCommand
from wire.memory import MemoryBroker, MemoryBus

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


def test_spent_nonces_and_the_floor_outlive_the_verifier_in_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "lane.db")
    verifier = CommandVerifier(KEY, ManualClock(START), "in1", max_remembered=2, spent=journal)
    first, second, third = (command(nonce=f"{n:032x}", valid_s=10 + n) for n in range(3))
    assert all(verifier.check(c).accepted for c in (first, second, third))
    journal.close()
    journal = Journal(tmp_path / "lane.db")
    try:
        restarted = CommandVerifier(KEY, ManualClock(START), "in1", max_remembered=2,
                                    spent=journal)
        assert restarted.remembered == 2
        assert [restarted.check(c).reason for c in (first, second, third)] == ["replayed"] * 3
        assert restarted.check(command(nonce="ef" * 16)).accepted
    finally:
        journal.close()


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


# One lane on mock pins: the real broker end to end, the in-memory one for the rest --------


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
        commands=CommandSettings(hmac_key=None if key is None else SecretStr(key.hex())),
        camera=CameraSettings(type="simulated"),
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


def memory_lane(memory: MemoryBroker, tmp_path: Path, clock: ManualClock, lane: str,
                key: bytes | None) -> MemoryLane:
    hmac_key = None if key is None else SecretStr(key.hex())
    return MemoryLane(tmp_path, lane=lane, broker=memory, clock=clock,
                      commands=CommandSettings(hmac_key=hmac_key))


@pytest.fixture
def in1(memory: MemoryBroker, test_site: ProvisionResult, clock: ManualClock,
        tmp_path: Path) -> Iterator[MemoryLane]:
    with memory_lane(memory, tmp_path, clock, "in1", lane_key(test_site, "in1")) as lane:
        yield lane


@pytest.fixture
def gateway_bus(memory: MemoryBroker) -> Iterator[MemoryBus]:
    with memory.bus("gateway") as bus:
        yield bus


@pytest.fixture
def audit(tmp_path: Path, clock: ManualClock) -> AuditLog:
    return AuditLog(migrate(sqlite_utils.Database(tmp_path / "audit.db")), clock=clock)


@pytest.fixture
def commander(gateway_bus: MemoryBus, test_site: ProvisionResult, clock: ManualClock,
              audit: AuditLog) -> LaneCommander:
    return LaneCommander(gateway_bus, SITE, test_site.device("gateway").lane_keys, clock, audit)


def of_type(recorder: Recorder, kind: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, recorder.payloads()) if e["type"] == kind]


def send(bus: Bus, lane: str, payload: bytes) -> None:
    bus.publish_and_wait(topics.lane_cmd(SITE, lane), payload)


@integration
def test_a_guard_opens_for_a_refused_car_and_the_barrier_closes_only_behind_it(
    broker: MosquittoBroker, test_site: ProvisionResult, tmp_path: Path,
) -> None:
    """End to end on the real broker: the gateway refuses, a guard's signed open through
    the locked-down broker lets the car out, and the audit chain holds the order."""
    clock = ManualClock(START)
    config = GatewayConfig(site=SITE, database=tmp_path / "gateway.db",
                           broker=settings_of(broker.address("gateway")))
    with GatewayApp(config, clock=clock) as app, \
            Recorder(broker, topics.all_lane(SITE, "event"), device="monitor-watch1") as events:
        commander = LaneCommander(app.bus, SITE, test_site.device("gateway").lane_keys, clock,
                                  app.audit)
        with start_lane(broker, "out1", "exit", clock, lane_key(test_site, "out1")) as lane:
            pins, controller = lane.pins, lane.node.controller
            lane.camera.show("粤B99999")  # never came in: the gateway refuses it
            pins.arming.drive_high()
            eventually(lambda: bool(of_type(events, "decision")), what="the refusal")
            assert of_type(events, "decision")[0]["reason"] == "no_entry_record"
            controller.wait_idle()  # the refused car waits: nothing more to do
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
                controller.wait_idle()
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


def test_a_guard_can_open_before_the_car_reaches_the_loops(
    in1: MemoryLane, commander: LaneCommander
) -> None:
    commander.open("in1", actor="guard:0042", reason="delivery van waved in")
    in1.settle()
    pins = in1.pins
    assert pins.relay.state, "barrier up"
    in1.step(seconds=60)
    assert pins.relay.state, "barrier closed before the car came"
    pins.arming.drive_high()
    pins.safety.drive_high()
    pins.arming.drive_low()
    pins.safety.drive_low()
    in1.settle()
    assert not pins.relay.state, "barrier down behind the van"
    assert len(in1.events("passed")) == 1
    assert not in1.events("vehicle_detected"), "the van was served twice"


def _bad_signature(_lane: MemoryLane, key: bytes) -> bytes:
    return command(key=bytes(reversed(key))).to_json()


def _other_lanes_key(_lane: MemoryLane, _key: bytes) -> bytes:
    return command(key=bytes(32)).to_json()


def _expired(lane: MemoryLane, key: bytes) -> bytes:
    return command(key=key, issued=lane.clock.now() - timedelta(seconds=60)).to_json()


def _not_yet_valid(lane: MemoryLane, key: bytes) -> bytes:
    return command(key=key, issued=lane.clock.now() + timedelta(minutes=10)).to_json()


def _garbage(_lane: MemoryLane, _key: bytes) -> bytes:
    return b'{"command": "open", "please": true}'


@pytest.mark.parametrize(("forge", "reason"), [
    pytest.param(_bad_signature, "bad_signature", id="bad-signature"),
    pytest.param(_other_lanes_key, "bad_signature", id="another-key"),
    pytest.param(_expired, "expired", id="expired"),
    pytest.param(_not_yet_valid, "not_yet_valid", id="not-yet-valid"),
    pytest.param(_garbage, "malformed", id="malformed"),
])
def test_a_bad_command_is_reported_and_the_barrier_does_not_move(
    in1: MemoryLane, test_site: ProvisionResult, gateway_bus: MemoryBus, forge: Any, reason: str,
) -> None:
    send(gateway_bus, "in1", forge(in1, lane_key(test_site, "in1")))
    in1.settle()
    faults = in1.events("fault")
    assert [fault["code"] for fault in faults] == ["command_rejected"]
    assert faults[0]["detail"].startswith(f"{reason}:")
    assert not in1.pins.relay.state
    assert not in1.events("barrier") and not in1.events("decision")
    assert in1.controller.commands_done == 0


def test_a_replayed_open_is_refused_after_the_first_one_was_obeyed(
    in1: MemoryLane, commander: LaneCommander, gateway_bus: MemoryBus
) -> None:
    order = commander.open("in1", actor="guard:0042", reason="help button")
    in1.settle()
    pins = in1.pins
    assert pins.relay.state
    pins.arming.drive_high()
    pins.safety.drive_high()
    pins.arming.drive_low()
    pins.safety.drive_low()
    in1.settle()
    assert not pins.relay.state
    assert len(in1.events("barrier")) == 2  # open and closed

    send(gateway_bus, "in1", order.to_json())  # recorded off the wire and played back
    in1.settle()
    assert in1.events("fault")[0]["detail"].startswith("replayed:")
    assert not pins.relay.state
    assert len(in1.events("barrier")) == 2
    assert len(in1.events("decision")) == 1


def test_a_close_while_a_car_stands_under_the_boom_waits_until_the_loop_is_clear(
    in1: MemoryLane, commander: LaneCommander
) -> None:
    pins = in1.pins
    commander.hold_open("in1", actor="guard:0042", reason="fire drill: let cars out freely")
    in1.settle()
    assert pins.relay.state, "barrier held up"
    pins.safety.drive_high()  # a car stops under the boom
    commander.close("in1", actor="guard:0042", reason="drill over")
    in1.settle()
    assert in1.controller.commands_done == 2, "the close taken up"
    for _ in range(3):
        in1.step(minutes=10)
        assert pins.relay.state, "barrier lowered onto a vehicle"
    pins.safety.drive_low()
    in1.settle()
    assert not pins.relay.state, "barrier down once the loop is clear"
    assert any(e["cause"] == "command_close" for e in in1.events("barrier"))


def test_a_held_open_barrier_stays_up_for_passing_cars_until_closed(
    in1: MemoryLane, commander: LaneCommander
) -> None:
    pins = in1.pins
    commander.hold_open("in1", actor="guard:0042", reason="evacuation")
    in1.settle()
    assert pins.relay.state and in1.controller.state().mode == "free_open"
    pins.safety.drive_high()
    pins.safety.drive_low()
    in1.step(minutes=10)
    assert pins.relay.state
    commander.close("in1", actor="guard:0042", reason="evacuation over")
    in1.settle()
    assert not pins.relay.state
    assert in1.controller.state().mode == "normal"


def test_a_display_command_sets_the_lane_display_text(
    in1: MemoryLane, test_site: ProvisionResult, gateway_bus: MemoryBus
) -> None:
    order = command("display", key=lane_key(test_site, "in1"), zh="请稍候 保安马上到",
                    en="Please wait: a guard is coming")
    send(gateway_bus, "in1", order.to_json())
    in1.settle()
    shown = in1.controller.display
    assert shown is not None and shown.zh == "请稍候 保安马上到"


def test_a_lane_without_a_key_refuses_even_a_correctly_signed_command(
    memory: MemoryBroker, test_site: ProvisionResult, clock: ManualClock, tmp_path: Path,
    gateway_bus: MemoryBus,
) -> None:
    with memory_lane(memory, tmp_path, clock, "in2", key=None) as lane:
        send(gateway_bus, "in2", command(key=lane_key(test_site, "in2"), lane="in2").to_json())
        lane.settle()
        assert [fault["code"] for fault in lane.events("fault")] == ["command_rejected"]
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
