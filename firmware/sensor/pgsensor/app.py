# Boot: read config.json, start the watchdog, join Wi-Fi, run the node loop forever. The loop
# waits on pin interrupts (inputs.Wake) rather than sleeping blind: the fire node's wake lines
# end the wait at their edge, and while a loop is being confirmed the node asks for a pass
# every `sample_ms` instead of every `loop_ms`.
import time

from pgsensor import VERSION, board, config
from pgsensor.inputs import Wake
from pgsensor.link import Link

# MicroPython has no `typing` module: mypy treats any name TYPE_CHECKING as true, the runtime
# sees False (the node modules stay imported on demand, to keep RAM free).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pgsensor.fire import FireNode
    from pgsensor.flood import FloodNode


def build(cfg, wdt, wake):
    link = Link(cfg, wdt)
    node: "FireNode | FloodNode"
    if cfg["kind"] == "fire_panel":
        from pgsensor.fire import FireNode

        node = FireNode(cfg, link, wake)
    else:
        from pgsensor.flood import FloodNode

        node = FloodNode(cfg, link)
    return link, node


def main(path="config.json"):
    cfg = config.load(path)
    print("parkguard sensor", VERSION, cfg["kind"], cfg["node"], "site", cfg["site"])
    wdt = board.watchdog(cfg["watchdog_ms"])
    board.wifi_join(cfg.get("wifi"), wdt)
    wake = Wake()
    link, node = build(cfg, wdt, wake)
    while True:
        wdt.feed()
        now = time.ticks_ms()
        node.poll(now)
        link.service(now)
        wake.wait(node.pause_ms())
