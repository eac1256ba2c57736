"""Photos of an incident and the accident's alert.

The checks of one picture (decoded, bounded, re-encoded without EXIF) run on an in-memory
database; the rest end to end: the real web app (Starlette's TestClient) on a simulated
site (real Mosquitto, the gateway and lanes on mock pins, real SQLite) with the roster of
the site-operations tests, a photo swapped on disk caught by ``parkguard audit verify``."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from cli.audit import audit
from gateway.records.audit import AuditLog
from gateway.safety.incident_photos import (
    MAX_BYTES,
    MAX_PHOTOS,
    IncidentPhotos,
    MemoryPhotos,
    PhotoError,
    check_photos,
    clean_image,
)
from gateway.safety.incidents import IncidentDesk
from gateway.storage.migrations import migrate
from gateway.web import WebSettings, create_web_app
from parkguard.clock import ManualClock
from simulator.site import SimulatedSite
from tests.ops_roster import rostered_site
from tests.test_web_auth import add_people, csrf_of, login

PLATES = ("粤B12345", "粤A99999")


def jpeg_with_location(width: int = 40, height: int = 20) -> bytes:
    """A phone's photo: the maker, "turn right" orientation and a GPS position in EXIF."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneCo"
    exif[0x0112] = 6
    exif[0x8825] = {1: "N", 2: (22.0, 32.0, 10.5), 3: "E", 4: (113.0, 56.0, 1.0)}
    out = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (8, 8), (0, 0, 255, 128)).save(out, "PNG")
    return out.getvalue()


# --- one picture -----------------------------------------------------------------------


def test_a_photo_is_re_encoded_upright_without_its_location_or_maker() -> None:
    data = jpeg_with_location()
    assert b"PhoneCo" in data
    cleaned, kind, width, height = clean_image(data)
    assert (kind, width, height) == ("JPEG", 20, 40)  # turned as its EXIF said
    assert b"PhoneCo" not in cleaned
    with Image.open(io.BytesIO(cleaned)) as kept:
        assert dict(kept.getexif()) == {}
        assert kept.getexif().get_ifd(0x8825) == {}
    assert clean_image(png())[1:] == ("PNG", 8, 8)


@pytest.mark.parametrize(("data", "said"), [
    (b"", "empty"),
    (b"MZ\x90\x00 not a picture at all", "not a JPEG or PNG picture"),
    (jpeg_with_location()[:200], "not a JPEG or PNG picture"),  # cut short: does not decode
    (b"x" * (MAX_BYTES + 1), "at most 10 MB"),
])
def test_what_is_not_a_whole_jpeg_or_png_is_refused_with_why(data: bytes, said: str) -> None:
    with pytest.raises(PhotoError, match=said):
        clean_image(data)


def test_a_gif_is_refused_by_name() -> None:
    out = io.BytesIO()
    Image.new("P", (4, 4)).save(out, "GIF")
    with pytest.raises(PhotoError, match=r"only JPEG or PNG .* GIF"):
        clean_image(out.getvalue())


def test_an_incident_takes_a_bounded_number_and_a_changed_file_is_named() -> None:
    clock = ManualClock(datetime(2026, 5, 6, 2, 0, tzinfo=UTC))
    db = migrate(sqlite_utils.Database(memory=True))
    audit_log = AuditLog(db, clock=clock)
    opened = IncidentDesk(db, clock=clock, audit=audit_log).open(
        "damage", description="mirror knocked off", reported_by="guard:gina")
    files = MemoryPhotos()
    photos = IncidentPhotos(db, clock=clock, audit=audit_log, files=files)
    kept = [photos.add(opened.incident_id, png(), actor="guard:gina")
            for _ in range(MAX_PHOTOS)]
    with pytest.raises(PhotoError, match=f"already has {MAX_PHOTOS} photos"):
        photos.add(opened.incident_id, png(), actor="guard:gina")
    assert check_photos(db, files) == []
    files.files[(opened.incident_id, kept[3].file_name)] = png()[:-1] + b"\x01"
    del files.files[(opened.incident_id, kept[5].file_name)]
    problems = check_photos(db, files)
    assert [(p.photo_id, p.kind) for p in problems] == [
        (kept[3].photo_id, "changed"), (kept[5].photo_id, "missing")]


# --- end to end ------------------------------------------------------------------------


@pytest.fixture
def rostered(broker: MosquittoBroker, tmp_path: Path,
             test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    with rostered_site(broker, tmp_path, test_site) as running:
        yield running


@pytest.fixture
def office(rostered: SimulatedSite) -> Iterator[TestClient]:
    web = create_web_app(rostered.gateway, settings=WebSettings(), clock=rostered.clock)
    add_people(rostered.gateway)
    with TestClient(web) as client:
        assert login(client, "sam") == 303  # a supervisor: incidents are theirs
        yield client


def flashes(html: str) -> str:
    return " ".join(part.split("</p>")[0] for part in html.split('class="flash')[1:])


@pytest.mark.integration
def test_an_accident_opened_with_photos_alerts_the_guard_and_squad_leader_and_a_swap_is_caught(
    rostered: SimulatedSite, office: TestClient, tmp_path: Path,
) -> None:
    gateway = rostered.gateway
    alerts = gateway.alerts
    assert alerts is not None
    page = office.get("/incidents").text
    assert 'enctype="multipart/form-data"' in page and 'name="photo"' in page
    opened = office.post("/incidents", data={
        "csrf_token": csrf_of(page), "kind": "accident", "lane": "out1",
        "description": "两车剐蹭 two cars scraped at the exit ramp",
        "plates": f"{PLATES[0]}, {PLATES[1].lower()}"},
        files=[("photo", ("scene.jpg", jpeg_with_location(), "image/jpeg")),
               ("photo", ("plate.png", png(), "image/png"))])
    assert opened.status_code == 200  # followed to the page
    assert "已保存照片 2" in flashes(opened.text)
    incident = gateway.service.call(lambda: gateway.incidents.incidents(kind="accident"))[0]
    assert incident.evidence["plates"] == list(PLATES)

    # the guard on duty and the squad leader are told at once, with the plates and a link
    alert = gateway.service.call(lambda: alerts.open_alert(f"accident:{incident.incident_id}"))
    assert alert is not None and alert.kind == "accident"
    assert all(plate in alert.title_zh and plate in alert.detail for plate in PLATES)
    assert f"/incidents#{incident.incident_id}" in alert.detail
    told = gateway.service.call(lambda: alerts.events(alert.alert_id))
    said = " ".join(e["detail"] for e in told if e["event"] == "escalated")
    assert "gina" in said and "sam" in said

    # the photos are on the incident's card and served to staff, metadata gone
    page = office.get("/incidents").text
    shots = gateway.service.call(lambda: office.app.state.incident_photos.photos(  # type: ignore[attr-defined]
        incident.incident_id))
    assert [s.format for s in shots] == ["JPEG", "PNG"]
    for shot in shots:
        assert shot.url in page
        served = office.get(shot.url)
        assert served.status_code == 200 and served.headers["content-type"] == shot.media_type
        assert b"PhoneCo" not in served.content
    assert office.get(f"/incidents/{incident.incident_id}/photos/ph-0000000000000000.jpg"
                      ).status_code == 404

    # a file that is not a picture is refused by name, and nothing is kept
    refused = office.post(f"/incidents/{incident.incident_id}/photos",
                          data={"csrf_token": csrf_of(page)},
                          files={"photo": ("scene.jpg", b"%PDF-1.4 not a photo",
                                           "image/jpeg")})
    assert "scene.jpg: 不是照片 this file is not a JPEG or PNG picture" in flashes(refused.text)
    assert len(gateway.service.call(lambda: office.app.state.incident_photos.photos(  # type: ignore[attr-defined]
        incident.incident_id))) == 2

    # the audit chain holds each file's hash: a swapped photo is reported by audit verify
    database = str(tmp_path / "gateway.db")
    checked = CliRunner().invoke(audit, ["verify", database])
    assert checked.exit_code == 0, checked.output
    swapped = tmp_path / "evidence" / "photos" / incident.incident_id / shots[0].file_name
    assert swapped.is_file()
    swapped.write_bytes(clean_image(jpeg_with_location(30, 30))[0])
    checked = CliRunner().invoke(audit, ["verify", database])
    assert checked.exit_code == 1
    assert f"{shots[0].file_name} is not the file recorded in audit entry" in checked.output

    # closing the incident ends its alert
    page = office.get("/incidents").text
    office.post(f"/incidents/{incident.incident_id}/close",
                data={"csrf_token": csrf_of(page), "text": "双方私了 settled between them"})
    assert gateway.service.call(
        lambda: alerts.open_alert(f"accident:{incident.incident_id}")) is None


@pytest.mark.integration
def test_a_damage_report_raises_no_accident_alert_and_a_bad_plate_is_refused(
    rostered: SimulatedSite, office: TestClient,
) -> None:
    gateway = rostered.gateway
    page = office.get("/incidents").text
    office.post("/incidents", data={"csrf_token": csrf_of(page), "kind": "damage",
                                    "description": "window left open", "plates": PLATES[0]})
    assert gateway.service.call(lambda: gateway.alerts.active()) == []  # type: ignore[union-attr]
    page = office.get("/incidents").text
    answer = office.post("/incidents", data={"csrf_token": csrf_of(page), "kind": "accident",
                                             "description": "scrape", "plates": "NOT-A-PLATE"})
    assert "is not a plate" in flashes(answer.text)
    assert gateway.service.call(lambda: gateway.incidents.incidents(kind="accident")) == []


@pytest.mark.integration
def test_a_guard_at_the_scene_reports_an_accident_with_photos_without_the_incidents_list(
    rostered: SimulatedSite,
) -> None:
    """The guard is the one at the scene: ``/incidents/report`` opens the incident with its
    plates and photos (and the accident's alert); the incidents list stays the seniors'."""
    gateway = rostered.gateway
    web = create_web_app(gateway, settings=WebSettings(), clock=rostered.clock)
    add_people(gateway)
    with TestClient(web) as phone:
        assert login(phone, "gina") == 303  # the guard
        assert phone.get("/incidents", follow_redirects=False).status_code == 403
        form = phone.get("/incidents/report?lane=out1")
        assert form.status_code == 200 and 'name="photo"' in form.text
        assert 'value="out1"' in form.text
        sent = phone.post("/incidents/report", data={
            "csrf_token": csrf_of(form.text), "kind": "accident", "lane": "out1",
            "description": "倒车撞柱 reversed into a pillar", "plates": PLATES[0]},
            files=[("photo", ("scene.jpg", jpeg_with_location(), "image/jpeg"))])
        assert sent.status_code == 200 and "/incidents/report" in str(sent.url)
        said = flashes(sent.text)
        assert "已上报 inc-" in said and "已保存照片 1" in said
    incident = gateway.service.call(lambda: gateway.incidents.incidents(kind="accident"))[0]
    assert incident.reported_by.endswith("gina")
    assert incident.evidence["plates"] == [PLATES[0]]
    shots = gateway.service.call(lambda: web.state.incident_photos.photos(incident.incident_id))
    assert len(shots) == 1 and shots[0].uploaded_by.endswith("gina")
    assert gateway.alerts is not None
    alerts = gateway.alerts
    assert gateway.service.call(
        lambda: alerts.open_alert(f"accident:{incident.incident_id}")) is not None
