"""One example payload per message, exactly as it travels.

Tests validate each one and docs/protocol.md shows them.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

_TARIFF_TEXT = '[[tariff]]\nid = "mall-2026"\nvalid_from = 2026-01-01\n'
_REPLICA = {"v": 1, "site": "mall-b2", "epoch": "7c1e0a9d4b2f4e61"}
_SESSION = {"session_id": "s-01HZX3", "plate": "粤B12345", "entry_at": "2026-05-01T02:00:00.000Z",
            "access": "visitor", "pass_id": None}
_PASS = {"pass_id": "P-0042", "kind": "monthly", "holder": "王*", "plates": ["沪A12345"],
         "valid_from": "2026-05-01T00:00:00.000Z", "valid_until": "2026-06-01T00:00:00.000Z",
         "vehicle_class": None, "max_inside": 1, "revoked_at": None}

_EVENT = {"v": 1, "seq": 41, "ts": "2026-05-01T02:00:00.120Z", "lane": "in1"}

EXAMPLES: Final[dict[str, dict[str, Any]]] = {
    "VehicleDetected": {**_EVENT, "event_id": "in1-000041-7f3a", "type": "vehicle_detected",
                        "loop": "arming"},
    "PlateRead": {**_EVENT, "event_id": "in1-000042-7f3a", "type": "plate_read",
                  "plate": "粤B12345", "confidence": 0.97,
                  "char_confidences": [0.99, 0.98, 0.97, 0.99, 0.96, 0.99, 0.98],
                  "reader": "simulated", "read_ms": 38.5},
    "Decision": {**_EVENT, "event_id": "in1-000043-7f3a", "type": "decision",
                 "correlation_id": "c0ffee00d1", "direction": "entry", "plate": "粤B12345",
                 "action": "open", "reason": "visitor_entry", "fee_fen": 0,
                 "session_id": "s-01HZX3", "decided_by": "gateway", "wait_ms": 0.7},
    "BarrierMoved": {**_EVENT, "event_id": "in1-000044-7f3a", "type": "barrier",
                     "position": "open", "cause": "decision"},
    "Passed": {**_EVENT, "event_id": "in1-000045-7f3a", "type": "passed", "direction": "entry",
               "plate": "粤B12345", "correlation_id": "c0ffee00d1", "session_id": "s-01HZX3",
               "fee_fen": 0},
    "Tailgate": {**_EVENT, "event_id": "in1-000046-7f3a", "type": "tailgate", "vehicles": 2},
    "HelpPressed": {**_EVENT, "event_id": "in1-000047-7f3a", "type": "help_pressed"},
    "PaymentCode": {**_EVENT, "event_id": "in1-000048-7f3a", "type": "payment_code",
                    "code": "PG1-8F2K-31QZ", "plate": "粤B12345", "fee_fen": 700},
    "Fault": {**_EVENT, "event_id": "in1-000049-7f3a", "type": "fault",
              "code": "barrier_limit_timeout", "detail": "up limit not reached in 6 s"},
    "LaneState": {"v": 1, "lane": "in1", "online": True, "direction": "entry", "mode": "normal",
                  "barrier": "closed", "queue": 0, "firmware": "0.1.0",
                  "ts": "2026-05-01T02:00:00.000Z"},
    "LaneCommand": {"v": 1, "command": "open", "args": {"hold_s": 10},
                    "reason": "driver lost ticket, fee taken in cash", "issuer": "guard:wang",
                    "nonce": "9f86d081884c7d65", "issued": "2026-05-01T02:00:00.000Z",
                    "expires": "2026-05-01T02:00:10.000Z", "sig": ""},
    "DecideRequest": {"v": 1, "correlation_id": "c0ffee00d1", "lane": "out1",
                      "direction": "exit", "plate": "粤B12345", "confidence": 0.97,
                      "char_confidences": [0.99, 0.98, 0.97, 0.99, 0.96, 0.99, 0.98],
                      "ts": "2026-05-01T03:30:00.000Z", "deadline_ms": 300},
    "DecideReply": {"v": 1, "correlation_id": "c0ffee00d1", "action": "open",
                    "reason": "paid_at_exit", "fee_fen": 700, "session_id": "s-01HZX3",
                    "display_zh": "粤B12345 停车1小时30分 应付7.00元",
                    "display_en": "1h30m parked, pay CNY 7.00", "ts": "2026-05-01T03:30:00.001Z"},
    "SensorReading": {"v": 1, "node": "flood-b2", "seq": 1203, "ts": "2026-05-01T02:00:00.000Z",
                      "kind": "flood", "water_level_mm": 35, "pump_running": False,
                      "battery_mv": 3950},
    "SensorState": {"v": 1, "node": "flood-b2", "online": True, "heartbeat_s": 30,
                    "firmware": "0.1.0", "ts": "2026-05-01T02:00:00.000Z"},
    "PatrolTap": {"v": 1, "reader": "patrol-1", "seq": 17, "tag_id": "04A1B2C3D4E5F6",
                  "sun": None, "badge": "G017", "reader_time": "2026-05-01T10:02:13",
                  "uploaded": "2026-05-01T02:05:00.000Z"},
    "AlarmState": {"v": 1, "kind": "fire", "active": True, "source": "fire-panel",
                   "zone": "B2-east", "since": "2026-05-01T02:00:00.000Z",
                   "ts": "2026-05-01T02:00:00.000Z"},
    "Alert": {"v": 1, "alert_id": "a-000123", "kind": "flood", "severity": "critical",
              "state": "raised", "escalation_step": 0, "title_zh": "B2层水位超警戒",
              "title_en": "B2 water level above alarm line", "detail": "35 mm at flood-b2",
              "raised_at": "2026-05-01T02:00:00.000Z", "acked_by": None,
              "ts": "2026-05-01T02:00:00.000Z"},
    "ReplicaSnapshot": {**_REPLICA, "version": 118, "taken_at": "2026-05-01T03:00:00.000Z",
                        "sessions": [_SESSION,
                                     {"session_id": "s-01HZX9", "plate": "沪A12345",
                                      "entry_at": "2026-05-01T02:10:00.000Z", "access": "pass",
                                      "pass_id": "P-0042"}],
                        "passes": [_PASS],
                        "lists": [{"list_name": "whitelist", "plate": "粤B00001",
                                   "reason": "landlord", "until": None},
                                  {"list_name": "blacklist", "plate": "粤B66666",
                                   "reason": "fraudulent plate, police report 2026-114",
                                   "until": "2026-08-01T00:00:00.000Z"}],
                        "tariff": {"source": "/etc/parkguard/tariff.toml",
                                   "sha256": hashlib.sha256(_TARIFF_TEXT.encode()).hexdigest(),
                                   "text": _TARIFF_TEXT},
                        "prepaid": [{"session_id": "s-01HZX3", "paid_fen": 700,
                                     "grace_until": "2026-05-01T03:15:00.000Z"}]},
    "ReplicaDelta": {**_REPLICA, "version": 119, "ts": "2026-05-01T03:00:02.250Z",
                     "kind": "session_opened", "data": {**_SESSION, "session_id": "s-01HZXA",
                                                        "plate": "粤B54321",
                                                        "entry_at": "2026-05-01T03:00:02.000Z"}},
    "CapacityState": {"v": 1, "site": "mall-b2", "total": 240, "occupied": 232, "free": 8,
                      "reserve": 10, "full": True,
                      "levels": {"B1": {"capacity": 120, "occupied": 120, "full": True},
                                 "B2": {"capacity": 120, "occupied": 112, "full": False}},
                      "ts": "2026-05-01T03:00:02.300Z"},
}
