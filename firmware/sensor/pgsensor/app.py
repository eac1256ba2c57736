# Boot: read config.json, start the watchdog, join Wi-Fi, run the node loop forever.
import time

from pgsensor import VERSION, board, config
from pgsensor.link import Link

# MicroPython has no `typing` module: mypy treats any name TYPE_CHECKING as true, the runtime
# sees False (the node modules stay imported on demand, to keep RAM free).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pgsensor.fire import FireNode
    from pgsensor.flood import FloodNode


def build(cfg, wdt):
    link = Link(cfg, wdt)
    node: "FireNode | FloodNode"
    if cfg["kind"] == "fire_panel":
        from pgsensor.fire import FireNode

        node = FireNode(cfg, link)
    else:
        from pgsensor.flood import FloodNode

        node = FloodNode(cfg, link)
    return link, node


def main(path="config.json"):
    cfg = config.load(path)
    print("parkguard sensor", VERSION, cfg["kind"], cfg["node"], "site", cfg["site"])
    wdt = board.watchdog(cfg["watchdog_ms"])
    board.wifi_join(cfg.get("wifi"), wdt)
    link, node = build(cfg, wdt)
    loop_ms = cfg["loop_ms"]
    while True:
        wdt.feed()
        now = time.ticks_ms()
        node.poll(now)
        link.service(now)
        time.sleep_ms(loop_ms)
