"""``parkguard lane selftest``: walks an installer through every input and output of a lane.

Outputs (barrier relay or open/close pulses, lane light) are switched one at a time and the
installer says whether the right thing happened; inputs (loops, limit switches, help button,
fire input) are each triggered by the installer and must be seen within ``--wait`` seconds.
An IP camera (``[camera] type = "rtsp"``) must send a frame, and an RS-485 LED display must
acknowledge a test screen that the installer then confirms.
``--script FILE`` answers the prompts from a file (one answer a line: ``y``/``n`` for an
output, ``trigger`` for an input: with ``--mock-pins`` the selftest then drives the mock pin
itself), so a test can run it on gpiozero's MockFactory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from firmware.lane.config import LaneConfig
from firmware.lane.devices.hardware import Contact, LaneHardware, VehicleLoop


def _inputs(hw: LaneHardware) -> list[tuple[str, str, Callable[[], bool]]]:
    items: list[tuple[str, str, Callable[[], bool]]] = []
    loops: list[tuple[str, VehicleLoop]] = [("arming_loop", hw.arming_loop),
                                            ("safety_loop", hw.safety_loop)]
    for key, loop in loops:
        items.append((key, f"drive a car (or a loop tester) onto the {loop.name} loop",
                      lambda loop=loop: loop.vehicle_present))  # type: ignore[misc]
    contacts: list[tuple[str, Contact | None, str]] = [
        ("up_limit", hw.up_limit, "raise the boom by hand to its up limit switch"),
        ("down_limit", hw.down_limit, "lower the boom to its down limit switch"),
        ("help_button", hw.help_button, "press the help button"),
        ("fire_input", hw.fire_input, "trigger the fire panel's test relay"),
    ]
    for key, contact, what in contacts:
        if contact is not None:
            items.append((key, what, lambda c=contact: c.active))  # type: ignore[misc]
    return items


@click.command("selftest")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), required=True,
              help="Lane TOML file.")
@click.option("--mock-pins", is_flag=True, help="gpiozero MockFactory instead of real GPIO.")
@click.option("--script", "script", type=click.Path(path_type=Path, exists=True),
              default=None, help="Answer the prompts from this file (non-interactive).")
@click.option("--wait", "wait_s", type=float, default=30.0, show_default=True,
              help="Seconds to wait for each input.")
def selftest(config_path: Path, mock_pins: bool, script: Path | None, wait_s: float) -> None:
    """Walk through each input and output of a lane on its pins (run it with the lane
    service stopped)."""
    from parkguard.configfile import load_config

    config = load_config(LaneConfig, config_path)
    factory = None
    if mock_pins:
        from gpiozero.pins.mock import MockFactory

        factory = MockFactory()
    answers: Iterator[str] | None = None
    if script is not None:
        answers = iter(script.read_text(encoding="utf-8").splitlines())

    def ask(prompt: str) -> str:
        if answers is None:
            return str(click.prompt(prompt, default="", show_default=False))
        answer = next(answers, "").strip()
        click.echo(f"{prompt} {answer}")
        return answer

    hw = LaneHardware(config.pins, pin_factory=factory, barrier=config.barrier)
    results: list[tuple[str, bool]] = []
    try:
        click.echo(f"selftest of lane {config.lane} ({config.barrier.kind} barrier); "
                   "keep people and cars clear of the boom")
        barrier = hw.barrier
        ask("Press Enter to RAISE the boom")
        barrier.raise_()
        results.append(("barrier raise", ask("Did the boom go up? [y/n]").lower() == "y"))
        ask("Press Enter to LOWER the boom")
        results.append(("barrier lower", barrier.lower()
                        and ask("Did the boom come down? [y/n]").lower() == "y"))
        ask("Press Enter to switch the lane light GREEN")
        hw.light.go()
        results.append(("light green", ask("Is the light green? [y/n]").lower() == "y"))
        hw.light.stop()
        results.append(("light red", ask("Is the light red? [y/n]").lower() == "y"))
        for key, what, active in _inputs(hw):
            answer = ask(f"{what}, then press Enter ({key}, waiting {wait_s:g} s)")
            if factory is not None and answer == "trigger":
                pin = factory.pin(getattr(config.pins, key))
                pin.drive_high()
            deadline = time.monotonic() + wait_s
            seen = active()
            while not seen and time.monotonic() < deadline:
                time.sleep(0.01)
                seen = active()
            if factory is not None and answer == "trigger":
                factory.pin(getattr(config.pins, key)).drive_low()
            results.append((key, seen))
        from firmware.lane.devices.hid_kiosk import kiosk_selftest  # [kiosk] keypad, scanner

        results += kiosk_selftest(config.kiosk, ask, wait_s)
        from firmware.lane.devices import led_display, rtsp

        results += rtsp.selftest(config.camera, click.echo, wait_s)  # [camera] type = "rtsp"
        results += led_display.selftest(config.display, ask)  # [display] type = "led_rs485"
    finally:
        hw.close()
    for name, ok in results:
        click.echo(f"{'PASS' if ok else 'FAIL'}  {name}")
    failed = [name for name, ok in results if not ok]
    if failed:
        raise click.ClickException(f"{len(failed)} check(s) failed: {', '.join(failed)}")
    click.echo("all checks passed")
