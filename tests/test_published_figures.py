"""The figures README.md and docs/ publish are the shipped JSON's: each claim below is formatted from
its file in assets/ and must appear, so a re-run that changes a number, or an edit that changes the
prose, fails here until both agree. (Tables that are generated, such as the limits table, have their
own tests.)"""
from __future__ import annotations

import json
from functools import cache

import pytest

from ccnet.project import ROOT


@cache
def asset(name: str) -> dict:
    return json.loads((ROOT / "assets" / name).read_text())


def ablation(arm: str) -> str:
    return f"{asset('ablation_frozen.json')['arms'][arm]['context_miou']['mean']:.3f}"


def video(arm: str, key: str = "temporal_context_miou") -> str:
    return f"{asset('video_ablation.json')['arms'][arm][key]['mean']:.3f}"


def video_spread(arm: str) -> str:
    return f"{asset('video_ablation.json')['arms'][arm]['temporal_context_miou']['spread']:.3f}"


def bench_row(case: str, impl: str) -> dict:
    (block,) = [b for b in asset("bench_cpu.json")["attention"] if b["size"] == [97, 97]]
    return next(r for r in block["rows"] if (r["case"], r["impl"]) == (case, impl))


def memory_ratio(case: str) -> str:
    return f"{bench_row(case, 'nonlocal')['peak_bytes'] / bench_row(case, 'fast')['peak_bytes']:.1f}×"


def memory_ratios() -> str:
    return f"{memory_ratio('training')} training, {memory_ratio('inference')} inference"


def fewer_flops() -> str:
    flops = asset("bench_cpu.json")["attention"][0]["flops"]
    return f"{100 * (1 - flops['rcca2'] / flops['nonlocal']):.1f}"


def loadtest_row() -> str:
    run = asset("loadtest.json")
    every = run["all"]
    return (f"| {run['visitors']} (1 upload + {run['clicks_per_visitor']} clicks each) | {run['requests']} | "
            f"{run['errors']} | {run['requests_per_s']:.1f} /s | {every['p50_ms']:.0f} ms | {every['p95_ms']:.0f} ms"
            f" | {every['max_ms']:.0f} ms | {run['server_peak_rss_mib']:.0f} MiB |")


def scale(config: str) -> str:
    runs = asset("scale_cpu.json")
    return f"{runs['speedup_over_one_process_default_threads'][config]['seconds']:.2f}x"


def viewer(image: str, what: str = "paint") -> str:
    return f"{asset('viewer_bench.json')['hover'][image][what]['median_ms']:.1f} ms"


def server_call(endpoint: str) -> str:
    call = asset("viewer_bench.json")["server_click"][endpoint]
    return f"| {call['median_ms']:.2f} ms | {call['p95_ms']:.2f} ms |"


def clip_hover(clip: str) -> str:
    return f"**{asset('viewer_bench_video.json')['video_hover'][clip]['paint']['median_ms']:.1f} ms**"


def attack(*keys: str) -> object:
    value = asset("loadtest_adversarial.json")
    for key in keys:
        value = value[key]
    return value


CLAIMS = [
    ("README.md", lambda: f"none {ablation('none')}, R = 1 {ablation('rcca_r1')}, **R = 2 {ablation('rcca_r2')}**, "
                          f"R = 3 {ablation('rcca_r3')}, non-local {ablation('nonlocal')}"),
    ("README.md", lambda: f"| {fewer_flops()} % |"),
    ("README.md", memory_ratios),
    ("README.md", lambda: f"3D R = 2 {video('rcca3d_r2')}, R = 3 {video('rcca3d_r3')}, "
                          f"non-local {video('nonlocal3d')}"),
    ("docs/ablation.md", lambda: f"R = 2 {ablation('rcca_r2')} ≈ R = 3 {ablation('rcca_r3')} ≈ non-local "
                                 f"{ablation('nonlocal')}**, against **R = 1\n{ablation('rcca_r1')} ≈ no attention "
                                 f"{ablation('none')}**"),
    ("docs/performance.md", lambda: f"| FLOPs saved by RCCA | ~85% | {fewer_flops()}% |"),
    ("docs/performance.md", lambda: f"| 11× | {memory_ratios()} |"),
    ("docs/performance.md", lambda: f"{bench_row('inference', 'fast')['median_ms']:.1f}"),
    ("docs/performance.md", lambda: f"{bench_row('training', 'nonlocal')['median_ms']:.1f}"),
    ("docs/app.md", lambda: f"{memory_ratio('training')} the memory of R = 2 in training "
                            f"({memory_ratio('inference')} in"),
    ("docs/app.md", lambda: f"R = 2 needs {fewer_flops()} %"),
    ("docs/video.md", lambda: f"**{video('rcca3d_r3')} ± {video_spread('rcca3d_r3')}**"),
    ("docs/video.md", lambda: f"| 3D R = 2 | {video('rcca3d_r2')} ± {video_spread('rcca3d_r2')}"),
    ("docs/video.md", lambda: f"| space-time non-local | **{video('nonlocal3d')} ±"),
    ("docs/robustness.md", loadtest_row),
    ("docs/robustness.md", lambda: f"RSS {attack('sessions', 'rss_before_mib')} → {attack('sessions', 'rss_after_mib')}"
                                   f" MiB (+{attack('sessions', 'rss_growth_mib')})"),
    ("docs/robustness.md", lambda: f"answered in {attack('slow_download', 'victim_median_ms')} ms (median)"),
    ("docs/robustness.md", lambda: f"{attack('queue_flood', 'accepted')} queued, {attack('queue_flood', 'refused')} "
                                   f"refused (\"retry\"); the visitor's click answered in "
                                   f"{attack('queue_flood', 'victim_ms')} ms"),
    ("docs/robustness.md", lambda: f"+{attack('round_two', 'session_memory', 'rss_growth_mib')} MiB "
                                   f"({attack('round_two', 'session_memory', 'per_session_kib')} KiB a session)"),
    ("docs/robustness.md", lambda: f"exit 0 in {attack('shutdown', 'seconds')} s"),
    ("docs/video.md", lambda: f"| 5×16×32 | {clip_hover('demo clip')} |"),
    ("docs/video.md", lambda: f"| 16×16×32 | {clip_hover('16-frame clip')} |"),
    ("docs/app.md", lambda: f"| **{viewer('demo scene')}** |"),
    ("docs/app.md", lambda: f"| **{viewer('2048 px image')}** |"),
    ("docs/app.md", lambda: f"| **{viewer('demo scene', 'pin')}** |"),
    ("docs/app.md", lambda: f"(JSON only) {server_call('attention_maps')}"),
    ("docs/app.md", lambda: f"on an analysed image {server_call('attention')}"),
    ("docs/app.md", lambda: f"costs {asset('viewer_bench.json')['server_click']['attention_maps_minus_floor_ms']} ms"),
    ("docs/scale.md", lambda: f"**{scale('torchrun_2_processes_1_thread')}**"),
]


def test_the_limits_table_is_the_one_the_code_enforces():
    from ccnet.limits import limits_table

    assert limits_table() in (ROOT / "docs" / "robustness.md").read_text()


@pytest.mark.parametrize("page, claim", CLAIMS, ids=[f"{page}-{i}" for i, (page, _) in enumerate(CLAIMS)])
def test_a_published_figure_is_the_shipped_jsons(page, claim):
    text = (ROOT / page).read_text()
    expected = claim()
    assert expected in text, f"{page} should say {expected!r} (from assets/)"
