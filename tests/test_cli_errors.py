"""The rough edges a newcomer meets first on the command line (issue 24), each run as the
installed ``parkguard`` command in a subprocess, as a person would:

* one error style, ``error: ...`` in lower case, never click's ``Error:`` nor Python's
  ``[Errno 2] ...``, and the file named;
* ``parkguard read`` prints no TFLite runtime INFO line, and the sample frames the README
  points at exist, are our renderer's, and read as their labels;
* ``users add Bob!`` is refused before a password is asked for;
* the demo without a terminal says the dashboard was not served and how to serve it.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.errors import plain_os_error
from simulator import sample_frames

PARKGUARD = str(Path(sys.executable).with_name("parkguard"))
ROOT = Path(__file__).resolve().parent.parent
FRAMES = ROOT / "docs" / "examples" / "frames"


def parkguard(*args: str, stdin: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PARKGUARD, *args], capture_output=True, text=True, cwd=ROOT,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          timeout=timeout, check=False)


def assert_one_style(done: subprocess.CompletedProcess[str], *named: str) -> None:
    assert done.returncode != 0, done
    assert "error: " in done.stderr, done.stderr
    assert "Error:" not in done.stderr and "Errno" not in done.stderr, done.stderr
    for word in named:
        assert word in done.stderr, (word, done.stderr)


def test_plain_os_error_names_the_file_without_errno() -> None:
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y.toml")
    assert plain_os_error(missing) == "/x/y.toml: no such file or directory"
    assert plain_os_error(IsADirectoryError(errno.EISDIR, "Is a directory"), Path("/srv")
                          ) == "/srv: is a directory"


@pytest.mark.parametrize(("args", "named"), [
    (("read", "missing.jpg"), ("missing.jpg", "Usage: parkguard read")),
    (("read", "--models", "docs", "docs/examples/frames/gate-blue.jpg"),
     ("docs/reader.json: no such file or directory",)),
    (("read", "README.md"), ("README.md: not an image file",)),
    (("tariff", "check", "missing.toml"), ("missing.toml: no such file or directory",)),
    (("tariff", "check", "docs"), ("docs: is a directory",)),
    (("users", "list", "-c", "missing.toml"), ("missing.toml",)),
    (("no-such-command",), ("no such command",)),
])
def test_every_error_is_said_one_way(args: tuple[str, ...], named: tuple[str, ...]) -> None:
    assert_one_style(parkguard(*args), *named)


def test_a_bad_user_name_is_refused_before_the_password_is_asked(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'site = "test"\ndatabase = "{tmp_path / "gw.db"}"\n', encoding="utf-8")
    done = parkguard("users", "add", "-c", str(config), "Bob!", "--role", "guard")
    assert_one_style(done, "user name 'Bob!'")
    assert "Password" not in done.stdout + done.stderr
    taken = parkguard("users", "add", "-c", str(config), "bob", "--role", "guard",
                      "--password-stdin", stdin="a long secret word\n")
    assert taken.returncode == 0, taken.stderr
    again = parkguard("users", "add", "-c", str(config), "bob", "--role", "guard")
    assert_one_style(again, "user 'bob' already exists")
    assert "Password" not in again.stdout + again.stderr
    nobody = parkguard("users", "passwd", "-c", str(config), "nobody")
    assert_one_style(nobody, "no user 'nobody'")
    assert "Password" not in nobody.stdout + nobody.stderr


def test_the_shipped_frames_are_our_renders_and_read_as_labelled() -> None:
    assert sample_frames.check() == []
    labels = json.loads((FRAMES / "frames.json").read_text(encoding="utf-8"))
    assert sum((FRAMES / item["file"]).stat().st_size for item in labels) < 250_000
    gate = [item for item in labels if item["region"] is None]
    done = parkguard("read", "--json", *(str(FRAMES / item["file"]) for item in gate))
    assert done.returncode == 0, done.stderr
    reads = json.loads(done.stdout)["reads"]
    assert [r["plate"] for r in reads] == [item["plate"] for item in gate]
    lane = next(item for item in labels if item["region"] is not None)
    region = ",".join(map(str, lane["region"]))
    done = parkguard("read", "--region", region, str(FRAMES / lane["file"]))
    assert done.returncode == 0 and lane["plate"] in done.stdout, done


def test_read_prints_no_runtime_info_line() -> None:
    done = parkguard("read", str(FRAMES / "gate-green.jpg"))
    assert done.returncode == 0, done.stderr
    assert "INFO" not in done.stderr and "XNNPACK" not in done.stderr, done.stderr


def test_the_demo_without_a_terminal_says_how_to_serve_the_dashboard(tmp_path: Path) -> None:
    done = parkguard("demo", "--cars", "6", "--no-plot", "--out", str(tmp_path / "demo"),
                     timeout=300)
    assert done.returncode == 0, done.stderr
    assert "dashboard not served" in done.stdout and "parkguard demo --serve" in done.stdout
    quiet = parkguard("demo", "--cars", "6", "--no-plot", "--no-serve",
                      "--out", str(tmp_path / "asked"), timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "dashboard not served" not in quiet.stdout  # asked for: nothing to explain
