"""bench/serving/report.py: the goals judged from a run's figures, and the page it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness.cputime import descendants, other_processes, process_table
from bench.serving import report as serving_report


def _result(images: int, connections: int, images_per_s: float, p99_ms: float) -> dict:
    return {
        "images_per_request": images,
        "connections": connections,
        "images_per_s": images_per_s,
        "requests_per_s": images_per_s / images,
        "p50_ms": p99_ms / 2,
        "p99_ms": p99_ms,
        "server_cpu_us_per_image": 50.0,
        "rounds_images_per_s": [images_per_s],
        "mean_batch": 8.0,
        "ort_busy_fraction": 0.5,
        "mean_queue_wait_ms": 1.0,
    }


def _report(service_single: float, service_p99: float, peer: bool = True) -> dict:
    raw_b64 = 10_000.0
    servers = {
        "service": {
            "batched": _result(64, 8, 6_000.0, 20.0),
            "single": _result(1, 16, service_single, service_p99),
        },
        "plain": {
            "batched": _result(64, 8, 2_000.0, 80.0),
            "single": _result(1, 16, 1_000.0, 12.0),
        },
    }
    if peer:
        servers["peer"] = {
            "batched": _result(64, 8, 3_000.0, 50.0),
            "single": _result(1, 16, 500.0, 90.0),
        }
    for results in servers.values():
        for name, r in results.items():
            r["vs_raw_batch_64"] = r["images_per_s"] / raw_b64
            r["vs_plain"] = r["images_per_s"] / servers["plain"][name]["images_per_s"]
    raw = {
        f"batch_{b}": {
            "batch": b,
            "runs": 100,
            "seconds": 1.0,
            "images_per_s": per_s,
            "run_ms": 1.0,
            "cpu_us_per_image": 10.0,
            "rounds_images_per_s": [per_s],
        }
        for b, per_s in ((1, 2_000.0), (64, raw_b64))
    }
    return {
        "model": "models/m/1/model.onnx",
        "input": "1x28x28",
        "date": "2026-12-01 12:00 UTC",
        "command": ".venv/bin/python -m bench.serving --rounds 1",
        "settings": {"service_env": [], "service_dir": str(serving_report.REPO)},
        "ort_threads": 2,
        "png_bytes_mean": 491.0,
        "raw_ort": raw,
        "servers": servers,
        "rounds": [{}],
        "score_difference": {label: 0.0 for label in servers if label != "service"},
        "server_setups": {label: f"{label} setup" for label in servers},
        "machine": {
            "cpu": "Test CPU",
            "flags": ["avx2", "avx512f"],
            "cpus_available": 2,
            "cpus_online": 4,
            "cpu_quota": 2.0,
            "platform": "Linux",
            "python": "3.11",
            "wrk": "wrk 4",
            "versions": {"onnxruntime": "1"},
        },
        "loadavg_before": [0.1, 0.1, 0.1],
        "loadavg_after": [0.2, 0.1, 0.1],
        "wall_seconds": 100.0,
        "other_processes": {"cpu_s": 20.0, "wall_s": 100.0, "top": [["python pytest", 15.0]]},
        "errors": {"service single": 0},
    }


def test_all_three_goals_met() -> None:
    found = serving_report.goals(_report(service_single=2_500.0, service_p99=8.0))
    assert [g["met"] for g in found] == [True, True, True]
    assert found[0]["reached"] == "60%"
    assert found[1]["reached"] == "2.50x, p99 8.0 ms"


@pytest.mark.parametrize(
    ("single", "p99", "why"), [(1_900.0, 8.0, "too few requests/s"), (2_500.0, 10.5, "p99 high")]
)
def test_the_single_image_goal_needs_both_halves(single: float, p99: float, why: str) -> None:
    assert not serving_report.goals(_report(single, p99))[1]["met"], why


def test_behind_the_peer_on_one_load_is_not_met() -> None:
    report = _report(2_500.0, 8.0)
    report["servers"]["peer"]["single"]["images_per_s"] = 3_000.0
    assert not serving_report.goals(report)[2]["met"]


def test_without_the_peer_its_goal_is_not_met() -> None:
    found = serving_report.goals(_report(2_500.0, 8.0, peer=False))
    assert (found[2]["reached"], found[2]["met"]) == ("peer not run", False)


def test_the_page_shows_rows_goals_machine_and_others(tmp_path: Path) -> None:
    report = _report(2_500.0, 8.0)
    page = serving_report.markdown(report)
    for row in ("| this service, 1 image(s)/request, -c16 |", "| BentoML, 64 image(s)/request"):
        assert row in page
    assert "| single images >= 2.5x the plain endpoint's requests/s" in page
    assert page.count("| met |") == 3
    assert "Test CPU" in page and "avx512f" in page and "cgroup quota 2.0" in page
    assert "python pytest 15 s" in page and "(10% of its available CPUs)" in page
    assert "## Issue 18: the single-image path, profiled" in page  # the notes, appended
    serving_report.plot(report, tmp_path / "serving.png")
    assert (tmp_path / "serving.png").stat().st_size > 1000


def test_other_processes_leave_this_process_tree_out() -> None:
    table = process_table()
    assert descendants(table, 1) >= {1}
    others = other_processes(table, 1.0)
    assert others["cpu_s"] >= 0 and len(others["top"]) <= 5
