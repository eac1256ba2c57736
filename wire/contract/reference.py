"""Generates ``docs/protocol.md`` from the code, so the reference can never drift from it.

Run ``parkguard contract docs`` (or ``make docs``) after changing a model;
a test fails until you do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from wire.contract import messages as m
from wire.contract.examples import EXAMPLES

DOC_PATH: Final = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

# topic (under parkguard/v1/{site}), from → to, QoS/retain, models, what
TOPIC_TABLE: Final[tuple[tuple[str, str, str, tuple[type[BaseModel], ...], str], ...]] = (
    ("lane/{lane}/event", "lane → gateway", "1 / no",
     (m.VehicleDetected, m.PlateRead, m.Decision, m.BarrierMoved, m.Passed, m.Tailgate,
      m.HelpPressed, m.PaymentCode, m.Fault, m.FaultCleared),
     "what happened at the lane; `event_id` unique, `seq` per lane"),
    ("lane/{lane}/state", "lane → all", "1 / retained", (m.LaneState,),
     "online/offline (offline is the Last Will), mode, barrier, queue; repeated unchanged "
     "(same bytes) at least every 10 s as the lane's heartbeat"),
    ("lane/{lane}/cmd", "gateway → lane", "1 / no", (m.LaneCommand,),
     "signed order: HMAC-SHA256 over the canonical payload, nonce, expiry"),
    ("lane/{lane}/decide", "lane → gateway", "1 / no", (m.DecideRequest,),
     "request with a correlation id and the lane's deadline"),
    ("lane/{lane}/decide/reply", "gateway → lane", "1 / no", (m.DecideReply,),
     "the gateway's word, if it arrives before the deadline"),
    ("lane/{lane}/otp", "lane → gateway", "1 / no", (m.OtpRequest,),
     "no-plate kiosk: text a one-time code to a phone, or check the code typed"),
    ("lane/{lane}/otp/reply", "gateway → lane", "1 / no", (m.OtpReply,),
     "sent / refused, confirmed / wrong / expired / locked"),
    ("lane/{lane}/evidence/get", "gateway → lane", "1 / no", (m.EvidenceRequest,),
     "asks for the JPEGs the lane kept of one read (plate crop, whole view); "
     "see [evidence.md](evidence.md)"),
    ("lane/{lane}/evidence/reply", "lane → gateway", "1 / no", (m.EvidenceReply,),
     "the images in base64 pieces under the broker's packet limit, or none (dropped)"),
    ("sensor/{node}/reading", "sensor → gateway", "1 / no", (m.SensorReading,),
     "flood level, pump, fire-panel inputs, battery"),
    ("sensor/{node}/state", "sensor → all", "1 / retained", (m.SensorState,),
     "online/offline (Last Will), heartbeat period"),
    ("patrol/{reader}/tap", "patrol reader → gateway", "1 / no", (m.PatrolTap,),
     "checkpoint tap, buffered offline and uploaded in order"),
    ("alarm/{kind}", "gateway, fire node → all", "1 / retained", (m.AlarmState,),
     "site alarm `fire` or `flood`; lanes act on it directly"),
    ("gateway/availability", "gateway → lanes, all", "1 / retained", (m.GatewayAvailability,),
     "`online` while the gateway is connected, `offline` from its Last Will or clean stop; "
     "a lane that knows it is offline decides from its replica at once"),
    ("audit/head", "gateway → fleet", "1 / retained", (m.AuditHead,),
     "where the site's audit chain ends, at start and every few minutes: the fleet keeps "
     "each head, so a chain rewritten later is caught; see [fleet.md](fleet.md)"),
    ("alert/{id}", "gateway → staff", "1 / retained while active", (m.Alert,),
     "alert with severity, state and escalation step"),
    ("lane/{lane}/replica/snapshot", "gateway → lane", "1 / no", (m.ReplicaChunk,),
     "the lane's offline replica, a [ReplicaSnapshot](#replicasnapshot) cut into pieces that "
     "fit the broker's packet limit; see [replicas.md](replicas.md)"),
    ("lane/{lane}/replica/delta", "gateway → lane", "1 / no", (m.ReplicaDelta,),
     "one change after the snapshot, numbered; a gap means ask for a sync"),
    ("lane/{lane}/replica/capacity", "gateway → lane", "1 / retained", (m.CapacityState,),
     "occupancy and lot full (车位已满); see [capacity.md](capacity.md)"),
)

#: Messages that never travel whole, documented after the topics' messages: what the pieces
#: of a topic's messages join into.
CARRIED: Final[tuple[type[BaseModel], ...]] = (m.ReplicaSnapshot,)


def _type_of(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "const" in spec:
        return f"`{json.dumps(spec['const'], ensure_ascii=False)}`"
    if "enum" in spec:
        return " \\| ".join(f"`{json.dumps(v, ensure_ascii=False)}`" for v in spec["enum"])
    if "anyOf" in spec:
        return " \\| ".join(_type_of(s) for s in spec["anyOf"])
    kind = spec.get("type", "object")
    if kind == "array":
        return f"array of {_type_of(spec.get('items', {}))}"
    if kind == "object" and isinstance(spec.get("additionalProperties"), dict):
        return f"object of {_type_of(spec['additionalProperties'])}"
    if spec.get("format") == "date-time":
        return "date-time"
    return str(kind)


def _limits(spec: dict[str, Any]) -> str:
    keys = ("minimum", "exclusiveMinimum", "maximum", "minLength", "maxLength", "pattern")
    found = [f"{k}={spec[k]}" for k in keys if k in spec]
    return ", ".join(found)


def _field_table(title: str, doc: str, schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", ()))
    lines = [title, "", " ".join(doc.split()), "",
             "| field | type | required | limits | description |",
             "|---|---|---|---|---|"]
    for name, spec in schema["properties"].items():
        lines.append(
            f"| `{name}` | {_type_of(spec)} | {'yes' if name in required else 'no'} "
            f"| {_limits(spec)} | {spec.get('description', '')} |"
        )
    return lines


def _model_section(model: type[BaseModel], shown: set[str]) -> list[str]:
    """The model's table and example, then a table for each record it nests (once)."""
    schema = model.model_json_schema(mode="serialization")
    lines = _field_table(f"### {model.__name__}", (model.__doc__ or "").strip(), schema)
    example = json.dumps(EXAMPLES[model.__name__], ensure_ascii=False, indent=2)
    lines += ["", "```json", example, "```", ""]
    for name, nested in schema.get("$defs", {}).items():
        if name not in shown:
            shown.add(name)
            lines += [*_field_table(f"#### {name}", nested.get("description", ""), nested), ""]
    return lines


def render() -> str:
    lines = [
        "# ParkGuard wire protocol (v1)",
        "",
        "<!-- Generated by `parkguard contract docs` from wire/contract; do not edit. -->",
        "",
        "MQTT 3.1.1/5, JSON payloads in UTF-8. Every topic lives under "
        "`parkguard/v1/{site}/`; ids are 1-32 characters of `a-z 0-9 - _`. Money is integer "
        "fen; times are UTC ISO-8601 with milliseconds. Every payload carries `v`, the "
        "protocol version (the JSON integer 1); a receiver refuses versions it does not know. "
        "Integers are JSON integers within ±(2^53 − 1), never strings, floats or bools; "
        "floats are finite JSON numbers; times lie in 2000–2099 UTC. A receiver also "
        "refuses a message whose own stamp (`ts`, or `issued`, `taken_at`, `uploaded`) is "
        "far from its clock ([security.md](security.md#wire-contract)). A payload that "
        "fails validation is counted, logged and dead-lettered by the receiver.",
        "",
        "## Topics",
        "",
        "| topic | from → to | QoS / retain | payload | what |",
        "|---|---|---|---|---|",
    ]
    for topic, route, qos, models, what in TOPIC_TABLE:
        names = ", ".join(f"[{x.__name__}](#{x.__name__.lower()})" for x in models)
        lines.append(f"| `.../{topic}` | {route} | {qos} | {names} | {what} |")
    lines += ["", "## Messages", ""]
    shown: set[str] = set()
    for *_, models, _what in TOPIC_TABLE:
        for model in models:
            lines += _model_section(model, shown)
    lines += ["## Joined from pieces", ""]
    for model in CARRIED:
        lines += _model_section(model, shown)
    return "\n".join(lines).rstrip() + "\n"


def write(path: Path = DOC_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path
