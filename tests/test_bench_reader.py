"""The reader bench's report: the breakdown of degraded frames and a small real run."""

from __future__ import annotations

from simulator.bench_reader import breakdown, run, table
from simulator.plates_render.dataset import sample


def test_a_degraded_frame_counts_under_each_of_its_troubles_and_its_plate_width() -> None:
    scenes = [sample("heldout", 5, i, degraded=True) for i in range(6)]
    reads = [scene.text if i % 2 else "wrong" for i, scene in enumerate(scenes)]
    groups = breakdown(scenes, reads)
    troubles = {d for scene in scenes for d in scene.degradations}
    assert troubles <= groups.keys()
    widths = [key for key in groups if key.startswith("plate")]
    assert sum(groups[key]["frames"] for key in widths) == len(scenes)
    assert list(groups)[-len(widths):] == widths  # troubles first, then widths
    for trouble in troubles:
        hits = [s.text == r for s, r in zip(scenes, reads, strict=True)
                if trouble in s.degradations]
        assert groups[trouble] == {"frames": len(hits), "plate_e2e": sum(hits) / len(hits)}

def test_the_bench_runs_the_committed_models_and_prints_every_figure() -> None:
    report = run(4, baseline=False, fusion_cars=2)
    text = table(report)
    for label in ("plate accuracy clean, crops", "plate accuracy degraded, whole frame",
                  "fresh faces degraded", "detection recall", "degraded, plate",
                  "3 frames fused (same trouble)", "latency p50", "model size KiB"):
        assert label in text, label
    ours = report["ours"]
    assert ours["clean"]["plate_crops"] >= 0.5  # 4 clean crops: a broken model reads none
    assert ours["latency_ms_per_frame_1_thread"]["p50"] > 0
