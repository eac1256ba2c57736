"""Evidence images (docs/evidence.md): the lane's bounded store, the pieces on the wire, and
end to end against the real Mosquitto: a lane reads a rendered frame with its real reader,
the gateway fetches the read's images and the web route serves a valid JPEG; a lane that
is offline or has dropped the image gets words, not a picture; the ACL refuses a lane
publishing another lane's evidence and anyone but the gateway asking for it."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from broker.runner import MosquittoBroker
from firmware.lane.config import EvidenceSettings
from firmware.lane.evidence import encode_images, lane_store
from gateway.web import create_web_app
from parkguard.clock import ManualClock
from parkguard.errors import ContractError
from parkguard.evidence import DirectoryFiles, EvidenceStore, Kept, MemoryFiles, to_drop
from simulator.site import SimulatedSite
from tests.conftest import TEST_SITE
from tests.helpers import Recorder, eventually
from tests.test_web_auth import add_people, csrf_of, login
from wire.contract import topics
from wire.contract.evidence_chunks import EvidenceAssembler, evidence_pieces
from wire.contract.messages import EvidenceReply, EvidenceRequest
from wire.mqtt import MqttBus, publish_packet_size

NOW = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
PACKET_LIMIT = 262_144


# The store's bounds (pure) ----------------------------------------------------------------


def test_nothing_is_dropped_while_the_next_read_fits() -> None:
    kept = [Kept("a", 10), Kept("b", 10)]
    assert to_drop(kept, incoming=10, max_reads=3, max_bytes=30) == []


def test_the_oldest_reads_go_first_to_keep_the_count() -> None:
    kept = [Kept(name, 1) for name in "abcde"]
    assert to_drop(kept, incoming=1, max_reads=3, max_bytes=1000) == ["a", "b", "c"]


def test_the_oldest_reads_go_first_to_keep_the_bytes() -> None:
    kept = [Kept("a", 50), Kept("b", 10), Kept("c", 30)]
    assert to_drop(kept, incoming=25, max_reads=100, max_bytes=70) == ["a"]
    assert to_drop(kept, incoming=35, max_reads=100, max_bytes=70) == ["a", "b"]


@given(sizes=st.lists(st.integers(1, 500), max_size=60), max_reads=st.integers(1, 20),
       max_bytes=st.integers(500, 3000))
def test_a_store_never_holds_more_than_its_bounds_and_keeps_the_newest(
        sizes: list[int], max_reads: int, max_bytes: int) -> None:
    store = EvidenceStore(MemoryFiles(), max_reads=max_reads, max_bytes=max_bytes)
    for number, size in enumerate(sizes):
        assert store.keep(f"e{number}", {"car": b"x" * size}, None)
        listing = store.listing()
        assert len(listing) <= max_reads
        assert sum(k.size for k in listing) <= max_bytes
        assert listing[-1].event_id == f"e{number}"  # the read just kept is there
        names = [int(k.event_id[1:]) for k in listing]
        assert names == sorted(names) and names == list(range(names[0], number + 1))


def test_a_read_larger_than_the_whole_store_is_refused_and_counted() -> None:
    store = EvidenceStore(MemoryFiles(), max_reads=5, max_bytes=100)
    store.keep("small", {"car": b"x" * 10}, None)
    assert not store.keep("huge", {"car": b"x" * 101}, None)
    assert store.refused == 1 and [k.event_id for k in store.listing()] == ["small"]


def test_the_directory_store_keeps_its_order_and_bounds_across_a_restart(
        tmp_path: Path) -> None:
    settings = EvidenceSettings(max_reads=3)
    store = lane_store(settings, tmp_path / "ev")
    for number in range(4):
        store.keep(f"read{number}", {"plate": b"p" * 5, "car": b"c" * 7}, NOW)
    (tmp_path / "ev" / ".tmp-000000000099-cut").mkdir()  # a write cut short by a power cut
    again = lane_store(settings, tmp_path / "ev")
    assert [k.event_id for k in again.listing()] == ["read1", "read2", "read3"]
    assert [k.size for k in again.listing()] == [12, 12, 12]
    assert not (tmp_path / "ev" / ".tmp-000000000099-cut").exists()
    again.keep("read4", {"car": b"c"}, None)
    assert [k.event_id for k in again.listing()] == ["read2", "read3", "read4"]
    found = again.get("read3")
    assert found is not None and found.images == {"plate": b"p" * 5, "car": b"c" * 7}
    assert found.taken == NOW and again.get("read0") is None


def test_an_empty_directory_store_makes_no_directory_until_it_keeps_something(
        tmp_path: Path) -> None:
    files = DirectoryFiles(tmp_path / "later")
    assert files.listing() == [] and not (tmp_path / "later").exists()


def test_the_images_are_a_crop_of_the_plate_box_and_the_view_scaled_down() -> None:
    frame = Image.new("RGB", (1280, 720), "grey")
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG")
    images = encode_images(buffer.getvalue(), (600, 400, 740, 445), EvidenceSettings())
    plate, car = (Image.open(io.BytesIO(images[name])) for name in ("plate", "car"))
    assert plate.format == car.format == "JPEG"
    assert plate.size == (182, 77)  # the box with 15 % / 35 % margins
    assert car.size == (960, 540)
    no_box = encode_images(buffer.getvalue(), None, EvidenceSettings())
    assert set(no_box) == {"car"}


# The pieces on the wire -------------------------------------------------------------------


def _request(lane: str = "in1") -> EvidenceRequest:
    return EvidenceRequest(correlation_id="ev-test-0001", lane=lane,
                           event_id="0123456789abcdef", ts=NOW)


def test_an_image_larger_than_a_packet_travels_in_pieces_under_the_broker_limit() -> None:
    plate, car = b"\xff\xd8" + bytes(range(256)) * 40, b"\xff\xd8" + b"\x01\xfe" * 400_000
    settings = EvidenceSettings(chunk_bytes=144 * 1024)
    replies = evidence_pieces(_request(), {"plate": plate, "car": car},
                              chunk_bytes=settings.chunk_bytes, taken_at=NOW, now=NOW)
    assert [r.image for r in replies].count("car") == 6
    topic = topics.lane_evidence_reply(TEST_SITE, "in1")
    assert max(publish_packet_size(topic, len(r.to_json()), qos=1) for r in replies) \
        < PACKET_LIMIT
    assembler = EvidenceAssembler()
    joined = None
    for reply in reversed(replies):  # any order, a repeat changes nothing
        joined = assembler.offer(EvidenceReply.from_json(reply.to_json()))
        assembler.offer(reply)
    assert joined == {"plate": plate, "car": car} and assembler.taken_at == NOW


def test_no_images_is_one_answer_that_says_so() -> None:
    [reply] = evidence_pieces(_request(), {}, chunk_bytes=1024, taken_at=None, now=NOW)
    assert reply.images == () and reply.count == 0
    assert EvidenceAssembler().offer(reply) == {}


def test_a_damaged_piece_is_refused_naming_the_image() -> None:
    [reply] = evidence_pieces(_request(), {"car": b"\xff\xd8abc"}, chunk_bytes=1024,
                              taken_at=None, now=NOW)
    forged = reply.model_copy(update={"sha256": hashlib.sha256(b"other").hexdigest()})
    with pytest.raises(ContractError, match="car image"):
        EvidenceAssembler().offer(forged)


def test_a_reply_claiming_to_be_another_lanes_is_refused() -> None:
    [reply] = evidence_pieces(_request("in2"), {}, chunk_bytes=1024, taken_at=None, now=NOW)
    from wire.contract.messages import decode

    with pytest.raises(ContractError, match="does not match"):
        decode(topics.lane_evidence_reply(TEST_SITE, "in1"), reply.to_json())


# End to end on the real broker --------------------------------------------------------------


@pytest.fixture
def rendered_site(broker: MosquittoBroker, tmp_path: Path) -> Iterator[SimulatedSite]:
    with SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                       clock=ManualClock(NOW), entry_lanes=("in1",), exit_lanes=(),
                       reader="tflite") as running:
        add_people(running.gateway)
        yield running


def _reads(site: SimulatedSite) -> list[str]:
    with site.gateway.store.reader() as db:
        return [row[0] for row in db.execute(
            "SELECT event_id FROM events WHERE type = 'plate_read' ORDER BY seq")]


def test_the_gateway_fetches_a_reads_images_from_its_lane_and_serves_a_jpeg(
        rendered_site: SimulatedSite) -> None:
    site = rendered_site
    lane = site.lanes["in1"]
    for plate in ("粤B12345", "粤BD12345", "粤A00001"):
        site.drive("in1", plate)
    site.settle()
    keeper = lane.node.controller.evidence
    assert keeper is not None and keeper[0].wait_written()
    first, second, third = _reads(site)
    client = TestClient(create_web_app(site.gateway, clock=site.clock))
    assert client.get(f"/evidence/{first}/plate.jpg",
                      follow_redirects=False).status_code == 303  # staff only
    assert login(client, "gina") == 303

    answer = client.get(f"/evidence/{first}/plate.jpg")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    crop = Image.open(io.BytesIO(answer.content))
    crop.verify()
    assert crop.format == "JPEG" and crop.width > 2 * crop.height  # a plate's shape
    car = Image.open(io.BytesIO(client.get(f"/evidence/{first}/car.jpg").content))
    assert car.format == "JPEG" and car.width == 960
    lanes_page = client.get("/lanes").text
    assert f'src="/evidence/{third}/plate.jpg"' in lanes_page  # the live view's thumbnail

    # dropped from the lane's bounded store: the page gets words, not a picture
    assert lane.node.evidence is not None
    lane.node.evidence.files.delete(second)
    gone = client.get(f"/evidence/{second}/car.jpg")
    assert gone.status_code == 404 and "图像不可用 image unavailable" in gone.text

    # the lane goes offline: what the gateway fetched before is still served from its cache
    lane.node.stop()
    web = client.app.state.evidence  # type: ignore[attr-defined]
    eventually(lambda: web._lane_online("in1") is False, timeout=30,
               what="in1's offline state")
    assert client.get(f"/evidence/{first}/car.jpg").status_code == 200
    offline = client.get(f"/evidence/{third}/car.jpg")
    assert offline.status_code == 404 and "车道离线 lane offline" in offline.text


def test_an_incident_keeps_the_images_of_the_reads_it_concerns(
        rendered_site: SimulatedSite) -> None:
    site = rendered_site
    lane = site.lanes["in1"]
    site.drive("in1", "粤B54321")
    site.settle()
    keeper = lane.node.controller.evidence
    assert keeper is not None and keeper[0].wait_written()
    [read] = _reads(site)
    client = TestClient(create_web_app(site.gateway, clock=site.clock))
    assert login(client, "sam") == 303
    client.post("/incidents", data={"kind": "accident", "description": "arm touched a car",
                                    "lane": "in1", "csrf_token": csrf_of(
                                        client.get("/incidents").text)})
    page = client.get("/incidents").text
    assert f'src="/evidence/{read}/plate.jpg"' in page and f"/evidence/{read}/car.jpg" in page
    fetcher = client.app.state.evidence  # type: ignore[attr-defined]
    eventually(lambda: fetcher.kept.get(read) is not None, timeout=30,
               what="the incident's images in the kept store")
    # gone from the lane and from the gateway's cache: the incident still has them
    assert lane.node.evidence is not None
    lane.node.evidence.files.delete(read)
    fetcher.cache.files.delete(read)
    answer = client.get(f"/evidence/{read}/car.jpg")
    assert answer.status_code == 200 and answer.content[:2] == b"\xff\xd8"


# Who may ask and who may answer -------------------------------------------------------------


def _marker(what: str) -> bytes:
    return f"{what}-{uuid.uuid4().hex}".encode()


def _primed(recorder: Recorder, topic: str, via: MqttBus) -> None:
    probe = _marker("probe")
    deadline = time.monotonic() + 10
    while probe not in recorder.payloads():
        assert time.monotonic() < deadline, "the observer never subscribed"
        via.publish(topic, probe)
        time.sleep(0.02)


def test_a_lane_may_not_publish_another_lanes_evidence_nor_ask_for_it(
        broker: MosquittoBroker) -> None:
    root = topics.site_root(TEST_SITE)
    with MqttBus(broker.address("gateway"), client_id="gateway") as gateway, \
            Recorder(broker, f"{root}/lane/+/evidence/#", device="monitor-watch1") as seen, \
            Recorder(broker, topics.lane_evidence_get(TEST_SITE, "in1"),
                     device="lane-in1") as in1:
        _primed(seen, topics.lane_evidence_get(TEST_SITE, "out1"), gateway)
        forged_reply, forged_ask, own, control = (
            _marker("forged-reply"), _marker("forged-ask"), _marker("own"), _marker("control"))
        in1.bus.publish_and_wait(topics.lane_evidence_reply(TEST_SITE, "out1"), forged_reply)
        in1.bus.publish_and_wait(topics.lane_evidence_get(TEST_SITE, "out1"), forged_ask)
        in1.bus.publish_and_wait(topics.lane_evidence_reply(TEST_SITE, "in1"), own)
        gateway.publish_and_wait(topics.lane_evidence_get(TEST_SITE, "in1"), control)
        # one client's messages are forwarded in order: once its own is seen, the forged
        # ones sent before it would have been too
        eventually(lambda: own in seen.payloads(), timeout=30, what="the lane's own evidence")
        assert forged_reply not in seen.payloads() and forged_ask not in seen.payloads()
        eventually(lambda: control in in1.payloads(), timeout=30,
                   what="the gateway's request at the lane")
