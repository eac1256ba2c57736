"""The gateway's configuration file (TOML): site, broker, database, tariff."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, IPvAnyNetwork, model_validator

from gateway.contacts.settings import ContactSettings
from gateway.fleet_orders import FleetLinkSettings
from gateway.lanes.capacity import CapacitySettings
from gateway.lanes.evidence import EvidenceCacheSettings
from gateway.lanes.otp import OtpSettings
from gateway.money.payments.settings import AlipaySettings, WeChatPaySettings
from gateway.money.pricing import EXAMPLE_TARIFF
from gateway.plans.settings import PlanSettings
from gateway.runtime.discovery import HomeAssistantSettings
from gateway.safety.alarms import AlarmSettings
from gateway.safety.alerts import AlertSettings
from gateway.safety.complaints import ComplaintSettings
from gateway.safety.emergency import DEFAULT_NUMBERS, EmergencyNumber
from gateway.safety.shift_change import HandoverSettings
from parkguard.configfile import BrokerSettings, CommandKeyHex, StrictModel
from parkguard.core.plates import MatchPolicy
from parkguard.core.zones import TimeZoneName
from wire.contract.window import ReceiptWindow


class PaymentSettings(StrictModel):
    """Who takes drivers' money, and how long a driver has to leave after paying
    (docs/payments.md, "Real providers")."""

    provider: Literal["none", "simulated", "wechat", "alipay"] = Field(
        default="none",
        description="payment provider: `wechat` (with [payments.wechat]), `alipay` (with "
                    "[payments.alipay]), `none` (cash and waivers at the dashboard only; "
                    "付款码 are declined `no_provider`), or `simulated`: play money, which "
                    "only `parkguard demo` and tests may run (any other gateway refuses to "
                    "start with it)")
    grace_minutes: int = Field(default=15, ge=0, le=240,
                               description="minutes to reach the exit after paying in advance")
    notice_window_s: int = Field(default=300, ge=30, le=3600,
                                 description="a provider notice signed further than this from "
                                             "the gateway's clock is refused as stale")
    wechat: WeChatPaySettings | None = Field(default=None,
                                             description="WeChat Pay merchant settings")
    alipay: AlipaySettings | None = Field(default=None, description="Alipay app settings")

    @model_validator(mode="after")
    def _provider_has_settings(self) -> PaymentSettings:
        if self.provider == "wechat" and self.wechat is None:
            raise ValueError("provider = \"wechat\" needs a [payments.wechat] section")
        if self.provider == "alipay" and self.alipay is None:
            raise ValueError("provider = \"alipay\" needs a [payments.alipay] section")
        return self


#: The shortest lane age the live view may call stale (it polls every 2 s).
MIN_LANE_STALE_S = 10.0
#: The default age after which the live view greys a silent lane: lanes repeat their state
#: at least every 10 s (``[timing] state_heartbeat_s``, firmware/lane/status.py), so 35 s is
#: three heartbeats missed plus 5 s of slack for a busy broker or gateway, and still under the
#: "last seen 40 s ago" a guard should see on a dead lane.
DEFAULT_LANE_STALE_S = 35.0


class WebConfig(StrictModel):
    """The dashboard and the drivers' pay page (docs/dashboard.md)."""

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port; 0 picks a free one")
    secret_key_file: Path = Field(default=Path("var/web-session.key"),
                                  description="session-cookie key, made on first start (0600)")
    https_only: bool = Field(default=False,
                             description="mark cookies Secure (on when served behind HTTPS)")
    tls_certfile: Path | None = Field(
        default=None, description="PEM certificate: serve HTTPS here (with tls_keyfile)")
    tls_keyfile: Path | None = Field(default=None, description="PEM private key of tls_certfile")
    forwarded_allow_ips: list[str] = Field(
        default_factory=list,
        description="reverse proxies whose X-Forwarded-For/-Proto are believed (none)")
    public_url: str | None = Field(
        default=None, max_length=200, pattern=r"^https?://[\x21-\x7e]+[^/]$",
        description="the pay page's address as drivers' phones reach it (https://pay.example."
                    "cn), no trailing slash: an exit lane with a fee due shows a QR code of "
                    "{public_url}/pay?...; absent: the lane shows no QR, only 付款码")
    metrics_allow: list[IPvAnyNetwork] = Field(
        default_factory=list, max_length=32,
        description="addresses or networks (10.0.5.7/32) that may read /metrics: the site's "
                    "Prometheus, never a reverse proxy the public reaches (docs/"
                    "integrations.md); with neither this nor metrics_token_file, /metrics is off")
    metrics_token_file: Path | None = Field(
        default=None, description="a file holding a bearer token (16+ characters) that may "
                                  "read /metrics from any address")
    lane_stale_s: float = Field(
        default=DEFAULT_LANE_STALE_S, ge=0, le=3600,
        description="the live view greys a lane said online but not heard from (state, "
                    "heartbeat or event) for longer; 35 s: lanes repeat their state every "
                    "10 s, so three heartbeats missed (docs/dashboard.md); 10-3600 s, keep it "
                    "above 3 x the lanes' timing.state_heartbeat_s; 0: off")

    @model_validator(mode="after")
    def _tls_pair(self) -> WebConfig:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together: set both or neither")
        return self

    @model_validator(mode="after")
    def _stale_age(self) -> WebConfig:
        if 0 < self.lane_stale_s < MIN_LANE_STALE_S:
            raise ValueError(f"lane_stale_s: 0 (off) or at least {MIN_LANE_STALE_S:.0f} s (a "
                             "shorter age greys lanes between two polls of the live view; "
                             f"the default, {DEFAULT_LANE_STALE_S:.0f} s, is three of the "
                             "lanes' 10 s heartbeats missed)")
        return self


class ReplicaSettings(StrictModel):
    """What each lane is sent so it can decide alone (docs/replicas.md)."""

    snapshot_every: int = Field(default=200, ge=1,
                                description="a fresh snapshot after this many deltas")
    lanes: list[str] = Field(default_factory=list,
                             description="lane ids, when the broker bundle does not list them")


class SafetySettings(StrictModel):
    """The safety file: the roster and escalation for alerts, and the alarm thresholds
    (docs/alarms-and-alerts.md; example docs/examples/alerts.toml)."""

    alerts: AlertSettings
    alarms: AlarmSettings = AlarmSettings()
    plans: PlanSettings = Field(
        default=PlanSettings(), description="fire drills and response teams, heavy-rain "
                                            "readiness (docs/alarms-and-alerts.md)")
    complaints: ComplaintSettings = Field(
        default_factory=ComplaintSettings,
        description="hours to answer each kind of incident by a call-back (docs/incidents.md)")
    handover: HandoverSettings = Field(
        default_factory=HandoverSettings,
        description="the shift change: when a missing or unaccepted handover alerts "
                    "(docs/handover.md)")
    lane_offline_after_s: float = Field(
        default=0, ge=0, le=86_400,
        description="a lane not heard from for longer raises an `offline:{lane}` alert "
                    "(docs/alarms-and-alerts.md, lane faults); 0: only its Last Will does")


class GatewayConfig(StrictModel):
    """Everything the site gateway needs to run."""

    site: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="site slug")
    site_name: str = Field(
        default="", max_length=40, pattern=r"^[^\x00-\x1f<>]*$",
        description="the lot's name as drivers read it on the pay page (万象城B2停车场); "
                    "empty: the site slug")
    timezone: TimeZoneName = Field(default="Asia/Shanghai",
                                   description="site-local zone for screens")
    database: Path = Field(default=Path("var/gateway.db"), description="SQLite file")
    broker: BrokerSettings = BrokerSettings()
    tariff_file: Path = Field(
        default=EXAMPLE_TARIFF,
        description="tariff file (see docs/tariffs.md); `parkguard tariff check` validates it",
    )
    payments: PaymentSettings = PaymentSettings()
    capacity: CapacitySettings | None = Field(
        default=None, description="spaces per level and the lot-full rule (docs/capacity.md)")
    replicas: ReplicaSettings = ReplicaSettings()
    evidence: EvidenceCacheSettings = Field(
        default_factory=EvidenceCacheSettings,
        description="fetched evidence images of reads (docs/evidence.md)")
    lane_keys: dict[str, CommandKeyHex] = Field(
        default_factory=dict,
        description="lane id → hex HMAC key for signed commands, when the broker bundle "
                    "does not carry them")
    sensors: dict[str, Literal["fire_panel", "flood"]] = Field(
        default_factory=dict,
        description="sensor node id → kind (the site inventory's), when the broker bundle "
                    "does not carry them; a reading from a node not listed, or of another "
                    "kind, is refused")
    patrol_file: Path | None = Field(
        default=None, description="patrol regime: checkpoints, routes, roster, tag keys "
                                  "(docs/patrols.md); absent: taps are not checked")
    safety_file: Path | None = Field(
        default=None, description="roster, escalation and alarm thresholds; absent: alarms "
                                  "are not watched (docs/alarms-and-alerts.md)")
    web: WebConfig | None = Field(default=None,
                                  description="dashboard and pay page; absent: none")
    homeassistant: HomeAssistantSettings = Field(
        default=HomeAssistantSettings(),
        description="Home Assistant MQTT discovery (docs/integrations.md); off by default")
    emergency_numbers: tuple[EmergencyNumber, ...] = Field(
        default=DEFAULT_NUMBERS, min_length=1, max_length=8,
        description="tap-to-call numbers on every staff page, in this order (default 119 "
                    "fire, 110 police, 120 ambulance, 122 traffic accident)")
    matching: MatchPolicy = Field(
        default=MatchPolicy(), description="when a dirty exit read counts as a car inside"
    )
    receipt_window: ReceiptWindow = Field(
        default=ReceiptWindow(),
        description="how far a lane event's or decide request's `ts` may be from the "
                    "gateway's clock; outside it the message is dead-lettered")
    contacts: ContactSettings | None = Field(
        default=None, description="the owner contact register: numbers of drivers who agreed "
                                  "to be reached, kept encrypted (docs/contacts.md); absent: "
                                  "none are taken")
    fleet: FleetLinkSettings | None = Field(
        default=None, description="signed commands from the fleet (docs/fleet.md): the "
                                  "fleet's public key and bounds; absent: none are obeyed")
    otp: OtpSettings | None = Field(
        default=None, description="one-time codes texted to no-plate drivers (lanes with "
                                  "[kiosk] confirm = \"otp\"); absent: every code request "
                                  "is answered unavailable and the lanes fall back")

