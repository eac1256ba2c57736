"""The folders show the architecture, and this keeps them honest (docs/architecture.md).

- Layers (pyproject's ``[tool.importlinter]``): ``simulator`` may import everything;
  ``cli`` (the production command) everything but the simulator, which plugs its commands
  and bench cameras in through entry points instead; ``gateway`` and ``firmware`` neither
  each other nor anything above them; then ``broker``, ``wire`` and the kernel
  ``parkguard``, which imports nothing of ours. So no production module imports the
  simulator, and importing the command loads none of it (checked in a fresh interpreter).
- No module cycles: two modules that import each other (directly or round a loop) are one
  concept split badly, and whichever loads first sees the other half-built.
- Short modules: none over 500 lines in ``gateway/`` or ``firmware/lane/``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("parkguard", "wire", "broker", "gateway", "firmware", "simulator", "cli")
MAX_LINES = 500


def test_the_layering_contract_holds() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [
            (root, sorted(graph.find_modules_directly_imported_by(root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.find_modules_directly_imported_by(nxt))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_no_module_imports_itself_round_a_loop() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("a", "b", "c"):
        graph.add_module(name)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="a")
    graph.add_import(importer="b", imported="c")
    assert _cycles(graph) == [["a", "b"]]


def test_no_module_over_500_lines_in_the_gateway_or_the_lane() -> None:
    long = {str(path.relative_to(ROOT)): lines
            for folder in ("gateway", "firmware/lane")
            for path in sorted((ROOT / folder).rglob("*.py"))
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


_IMPORT_THE_COMMAND = """
import json, sys
from cli.main import main
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "simulator")))
"""


def test_the_parkguard_command_loads_no_simulator_until_a_simulator_command_is_run() -> None:
    done = subprocess.run([sys.executable, "-c", _IMPORT_THE_COMMAND], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_simulator_plugs_demo_and_sim_into_the_command() -> None:
    import click

    from cli.main import main

    with click.Context(main) as ctx:
        assert {"demo", "sim", "gateway", "lane"} <= set(main.list_commands(ctx))
        demo = main.get_command(ctx, "demo")
        assert demo is not None and demo.callback is not None
        assert demo.callback.__module__ == "simulator.commands"
        assert main.get_command(ctx, "no-such-command") is None
