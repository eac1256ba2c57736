# config.json on the device: read once at boot, defaults filled in, mistakes named.
import json

DEFAULTS = {
    "heartbeat_s": 30,
    "loop_ms": 10,
    "watchdog_ms": 8000,
    "report_s": 0,
    "outbox": {"name": "outbox", "max_records": 1000},
}
BROKER_DEFAULTS = {
    "port": 8883,
    "tls": True,
    "ca": "ca.crt",
    "keepalive_s": 30,
    "timeout_s": 5,
    "backoff_min_ms": 500,
    "backoff_max_ms": 30000,
    "max_inflight": 10,
}
KINDS = ("fire_panel", "flood")


class ConfigError(Exception):
    pass


def _need(section, key, where):
    if key not in section:
        raise ConfigError("config.json: %s needs %r" % (where, key))
    return section[key]


def load(path="config.json"):
    try:
        with open(path) as f:
            cfg = json.load(f)
    except OSError:
        raise ConfigError("config.json: cannot open %s" % path)
    except ValueError:
        raise ConfigError("config.json: %s is not valid JSON" % path)
    for key in ("node", "site", "kind", "broker"):
        _need(cfg, key, "the top level")
    if cfg["kind"] not in KINDS:
        raise ConfigError("config.json: kind must be one of %s, not %r" % (KINDS, cfg["kind"]))
    _need(cfg, cfg["kind"], "a %s node" % cfg["kind"])
    for key, value in DEFAULTS.items():
        cfg.setdefault(key, value)
    broker = cfg["broker"]
    _need(broker, "host", "broker")
    for key, value in BROKER_DEFAULTS.items():
        broker.setdefault(key, value)
    broker.setdefault("user", "sensor-" + cfg["node"])
    return cfg
