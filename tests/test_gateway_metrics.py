"""Prometheus ``/metrics`` on the gateway (issue 26): decisions, the lanes' wait for the
gateway, queue depth, dead letters, alarms, lanes, alert messages; who may read it.

The figures come from a real site: the real Mosquitto with the provisioned ACLs, the real
gateway and lanes on mock pins; cars drive through, a lane sends a broken message. The
scrape is parsed with prometheus-client's own text parser.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from gateway.app import GatewayApp, metrics_token
from gateway.config import GatewayConfig, WebConfig
from gateway.web import WebSettings, create_web_app
from gateway.web.metrics import GatewayCollector, MetricsAccess, letter_reason, registry_for
from parkguard.clock import ManualClock
from parkguard.configfile import BrokerSettings
from parkguard.errors import ConfigError
from simulator.site import SimulatedSite
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import eventually
from wire.contract import topics

TOKEN = "scrape-token-0123456789"
WAIT_S = 30.0
EXAMPLE_SAFETY = Path(__file__).parent.parent / "docs" / "examples" / "alerts.toml"


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape: (name, sorted labels) -> value."""
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def gateway_at(tmp_path: Path, safety_file: Path | None = None) -> GatewayApp:
    """A built, unstarted gateway (no broker needed): enough for its web app."""
    config = GatewayConfig(site="test", database=tmp_path / "gateway.db",
                           broker=BrokerSettings(host="127.0.0.1", port=1),
                           safety_file=safety_file)
    return GatewayApp(config, clock=ManualClock(SITE_START))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayApp]:
    app = gateway_at(tmp_path)
    yield app
    app.store.close()


@pytest.mark.integration
def test_a_real_site_counts_its_decisions_lanes_and_dead_letters(site: SimulatedSite) -> None:
    web = create_web_app(site.gateway, settings=WebSettings(metrics_token=TOKEN))
    with TestClient(web) as client:
        for plate in ("粤B10001", "粤B10002", "粤B10003"):
            site.drive("in1", plate)
            site.settle()
        site.drive("out1", "粤B10001")  # within the free minutes: no fee
        site.settle()
        # a lane that sends what is not a message: counted, kept, never stops the gateway
        site.lanes["in1"].node.bus.publish_and_wait(topics.lane_event(TEST_SITE, "in1"),
                                                    b"{not json")
        eventually(lambda: site.gateway.store.count("dead_letters") == 1, timeout=WAIT_S,
                   what="the dead letter")
        eventually(lambda: value(scrape(client), "parkguard_lanes", state="online") == 2,
                   timeout=WAIT_S, what="both lanes' retained state")
        samples = scrape(client)

    by_gateway = {"decided_by": "gateway"}
    assert value(samples, "parkguard_decisions_total", direction="entry", outcome="open",
                 **by_gateway) == 3
    assert value(samples, "parkguard_decisions_total", direction="exit", outcome="open",
                 **by_gateway) == 1
    assert value(samples, "parkguard_decision_wait_seconds_count", **by_gateway) == 4
    assert value(samples, "parkguard_decision_wait_seconds_bucket", le="+Inf",
                 **by_gateway) == 4
    assert value(samples, "parkguard_dead_letters_total", kind="lane_event",
                 reason="invalid") == 1
    assert value(samples, "parkguard_lane_online", lane="in1") == 1
    assert value(samples, "parkguard_lane_online", lane="out1") == 1
    assert value(samples, "parkguard_lanes", state="offline") == 0
    assert value(samples, "parkguard_ingest_queue_depth", queue="in_flight") == 0
    assert ("parkguard_ingest_queue_depth", (("queue", "decides"),)) in samples


def test_a_second_scrape_counts_only_what_is_new_and_never_twice(gateway: GatewayApp) -> None:
    store = gateway.store
    collector = GatewayCollector(reader=store.reader, inbox=gateway.inbox, lanes=dict,
                                 alarms=None, alerts_enabled=False)
    registry = registry_for(collector)

    def letters() -> float:
        return registry.get_sample_value("parkguard_dead_letters_total",
                                         {"kind": "unknown", "reason": "handler_error"}) or 0.0

    store.dead_letter(received_at="2026-05-06T02:00:00.000Z", topic="elsewhere/x",
                      payload=b"x", reason="handler error: KeyError: 'x'")
    assert letters() == 1
    assert letters() == 1  # read again: not counted again
    store.dead_letter(received_at="2026-05-06T02:00:01.000Z", topic="elsewhere/y",
                      payload=b"y", reason="handler error: KeyError: 'y'")
    assert letters() == 2


def test_dead_letter_reasons_are_a_bounded_set() -> None:
    assert letter_reason("handler error: KeyError: 'lane'") == "handler_error"
    assert letter_reason("ts 0:10:00 older than the gateway's clock; at most 0:05:00") \
        == "out_of_window"
    assert letter_reason("plate: String should have at most 16 characters") == "invalid"


class Alarms:
    """The alarm monitor's two answers the metrics read (its in-memory stand-in)."""

    def __init__(self, fire: bool, flood: int) -> None:
        self.fire, self.flood = fire, flood

    def fire_active(self) -> bool:
        return self.fire

    def flood_level(self) -> int:
        return self.flood


def test_alarm_states_by_kind(gateway: GatewayApp) -> None:
    alarms = Alarms(fire=True, flood=0)
    registry = registry_for(GatewayCollector(
        reader=gateway.store.reader, inbox=None, lanes=dict, alarms=alarms,
        alerts_enabled=False))
    assert registry.get_sample_value("parkguard_alarm_active", {"kind": "fire"}) == 1
    assert registry.get_sample_value("parkguard_alarm_active", {"kind": "flood"}) == 0
    alarms.fire, alarms.flood = False, 1  # a warning: the site's flood alarm is not on yet
    assert registry.get_sample_value("parkguard_alarm_active", {"kind": "fire"}) == 0
    assert registry.get_sample_value("parkguard_alarm_active", {"kind": "flood"}) == 0
    alarms.flood = 2  # entries closed: the alarm is on
    assert registry.get_sample_value("parkguard_alarm_active", {"kind": "flood"}) == 1
    assert registry.get_sample_value("parkguard_flood_level") == 2


def test_alert_messages_sent_and_failed_by_channel(tmp_path: Path) -> None:
    gateway = gateway_at(tmp_path, safety_file=EXAMPLE_SAFETY)
    try:
        rows = [("sent", "sms"), ("sent", "sms"), ("failed", "sms"), ("sent", "email"),
                ("queued", "email")]
        for number, (status, channel) in enumerate(rows):
            gateway.store.db.table("alert_notifications").insert({
                "alert_id": f"a{number}", "step": 0, "round": 0, "person": "p1",
                "channel": channel, "target": "[redacted]", "status": status,
                "queued_at": "2026-05-06T02:00:00.000Z"})
        with TestClient(create_web_app(gateway,
                                       settings=WebSettings(metrics_token=TOKEN))) as client:
            samples = scrape(client)
    finally:
        gateway.store.close()
    name = "parkguard_alert_notifications_total"
    assert value(samples, name, channel="sms", status="sent") == 2
    assert value(samples, name, channel="sms", status="failed") == 1
    assert value(samples, name, channel="email", status="sent") == 1
    assert value(samples, "parkguard_alert_notifications_queued", channel="email") == 1
    assert value(samples, "parkguard_alerts_active", severity="critical") == 0


def test_who_may_scrape(gateway: GatewayApp) -> None:
    closed = create_web_app(gateway)  # neither an address nor a token: no such page
    with TestClient(closed, client=("127.0.0.1", 40000)) as client:
        assert client.get("/metrics").status_code == 404
    settings = WebSettings(metrics_allow=("10.0.5.0/24",), metrics_token=TOKEN)
    web = create_web_app(gateway, settings=settings)
    with TestClient(web, client=("10.0.5.7", 40000)) as prometheus:
        assert prometheus.get("/metrics").status_code == 200
    with TestClient(web, client=("203.0.113.9", 40000)) as driver:  # the pay page's public
        assert driver.get("/metrics").status_code == 403
        assert driver.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456"}
                          ).status_code == 403
        assert driver.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
                          ).status_code == 200
    assert "metrics" not in "".join(create_web_app(gateway).openapi()["paths"])


def test_a_short_token_or_a_bad_network_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        MetricsAccess(token="short")
    with pytest.raises(ValueError, match="metrics_allow"):
        MetricsAccess(allow=("not-a-network",))


def test_two_gateways_in_one_process_keep_their_own_figures(tmp_path: Path) -> None:
    first, second = gateway_at(tmp_path / "a"), gateway_at(tmp_path / "b")
    try:
        first.store.dead_letter(received_at="2026-05-06T02:00:00.000Z", topic="x/y",
                                payload=b"x", reason="bad")
        with TestClient(create_web_app(first, settings=WebSettings(metrics_token=TOKEN))) as a, \
                TestClient(create_web_app(second,
                                          settings=WebSettings(metrics_token=TOKEN))) as b:
            key = ("parkguard_dead_letters_total", (("kind", "unknown"), ("reason", "invalid")))
            assert scrape(a)[key] == 1
            assert key not in scrape(b)
    finally:
        first.store.close()
        second.store.close()
    assert REGISTRY.get_sample_value("parkguard_dead_letters_total",
                                     {"kind": "unknown", "reason": "invalid"}) is None


def test_the_config_names_who_may_scrape(tmp_path: Path) -> None:
    token_file = tmp_path / "metrics.token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    web = WebConfig.model_validate({"metrics_allow": ["10.0.5.7", "10.0.6.0/24"],
                                    "metrics_token_file": str(token_file)})
    assert [str(network) for network in web.metrics_allow] == ["10.0.5.7/32", "10.0.6.0/24"]
    assert metrics_token(web.metrics_token_file) == TOKEN
    with pytest.raises(ValidationError, match="metrics_allow"):
        WebConfig.model_validate({"metrics_allow": ["everyone"]})
    token_file.write_text("short\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="metrics_token_file"):
        metrics_token(token_file)
    assert TOKEN not in repr(WebSettings(metrics_token=TOKEN))
