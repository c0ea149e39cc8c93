"""bench/serving's photograph mode: the JPEG sets, the decode-policy copies of a model, the limit
pipeline on a real model, and the goals and page written from a run's figures."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bench.serving import limit, photo_report
from bench.serving.photo_models import with_decode
from bench.serving.photo_run import parse_args
from bench.serving.photos import PHOTO_DIR, PHOTOGRAPHS, jpeg_of, photo_set, scaled_size
from modelfile.layout import open_model
from modelfile.metadata import METADATA_KEY
from modelfile.onnx_props import read_props

SHIPPED = Path(__file__).resolve().parents[2] / "models/fashion-mnist-trouser/1/model.onnx"


def test_scaled_size_keeps_the_aspect_ratio_and_the_pixel_count() -> None:
    width, height = scaled_size((4000, 2000), 2.0)
    assert (width, height) == (2000, 1000)
    assert scaled_size((640, 480), 12.0) == (4000, 3000)


def test_a_photograph_becomes_a_baseline_jpeg_of_the_size_and_mode() -> None:
    data, size = jpeg_of(PHOTO_DIR / PHOTOGRAPHS[3], 0.05, "L")
    with Image.open(io.BytesIO(data)) as img:
        assert (img.format, img.mode, img.size) == ("JPEG", "L", size)
        assert not img.info.get("progressive")
    assert abs(size[0] * size[1] - 50_000) < 500


def test_no_photograph_is_that_large() -> None:
    with pytest.raises(ValueError, match=r"no photograph in lomiri-wallpapers-16\.04 has 500"):
        photo_set(500, "RGB")


def test_with_decode_changes_the_policy_and_nothing_else(tmp_path: Path) -> None:
    copy = with_decode(SHIPPED, "reduced", tmp_path)
    assert open_model(copy)[1].decode == "reduced"
    assert open_model(SHIPPED)[1].decode == "full"
    before, after = read_props(SHIPPED.read_bytes()), read_props(copy.read_bytes())
    assert {k: v for k, v in before.items() if k != METADATA_KEY} == {
        k: v for k, v in after.items() if k != METADATA_KEY
    }
    assert copy.stat().st_size - SHIPPED.stat().st_size < 100


def test_the_limit_decodes_and_scores_photographs(tmp_path: Path) -> None:
    photos = [jpeg_of(PHOTO_DIR / name, 0.02, "RGB")[0] for name in PHOTOGRAPHS[:3]]
    found = limit.decode_and_score(SHIPPED, photos, 1, seconds=0.3, warmup_s=0.1)
    assert found["images"] % limit.CHUNK == 0 and found["images"] > 0
    assert found["images_per_s"] == pytest.approx(found["images"] / found["seconds"])
    assert limit.decode_ms(SHIPPED, photos, 3) > 0


def test_cases_must_pair_known_colours() -> None:
    assert parse_args(["--cases", "L:RGB,RGB:RGB"]).case_list == [("L", "RGB"), ("RGB", "RGB")]
    with pytest.raises(SystemExit):
        parse_args(["--cases", "L:CMYK"])


def _result(images: int, per_s: float) -> dict:
    return {
        "images_per_request": images,
        "connections": 8,
        "images_per_s": per_s,
        "requests_per_s": per_s / images,
        "p50_ms": 10.0,
        "p99_ms": 20.0,
        "server_cpu_us_per_image": 900.0,
    }


def _report(service_batched: float) -> dict:
    servers = {
        "service": {"batched": _result(8, service_batched), "single": _result(1, 900.0)},
        "service-full": {"batched": _result(8, 500.0), "single": _result(1, 400.0)},
        "plain": {"batched": _result(8, 200.0), "single": _result(1, 180.0)},
    }
    size = {
        "limit": {"images_per_s": 1_800.0, "processes": 2},
        "limit_full": {"images_per_s": 700.0, "processes": 2},
        "decode_ms": {"reduced": 1.0, "full": 2.8},
        "servers": servers,
    }
    case = {
        "model_color": "L",
        "jpeg_color": "RGB",
        "photos": {"1": {"names": ["a.jpg"], "sizes": [[1000, 1000]], "mean_bytes": 2e5}},
        "raw_ort_batch_64": {"images_per_s": 3_000.0, "cpu_us_per_image": 600.0},
        "sizes": {"1": size},
        "server_setups": {label: f"{label} setup" for label in servers},
    }
    return {
        "date": "2026-12-07 13:00 UTC",
        "command": ".venv/bin/python -m bench.serving --photos",
        "settings": {"rounds": 1, "duration": 6},
        "cpus": 2,
        "cases": {"L:RGB": case},
        "machine": {
            "cpu": "Test CPU",
            "cpus_available": 2,
            "platform": "Linux",
            "python": "3.11",
            "versions": {"onnxruntime": "1"},
        },
        "loadavg_before": [1.0, 1.0, 1.0],
        "loadavg_after": [1.0, 1.0, 1.0],
        "wall_seconds": 100.0,
        "other_processes": {"cpu_s": 50.0, "wall_s": 100.0, "top": [["python pytest", 40.0]]},
    }


def test_the_goal_needs_both_the_speed_up_and_the_share_of_the_limit() -> None:
    met = photo_report.goals(_report(1_600.0))[0]
    assert met["met"] and met["reached"].startswith("3.20x today's (1,600 against 500), 89%")
    assert not photo_report.goals(_report(1_400.0))[0]["met"]  # 2.8x today's
    slow_limit = _report(1_600.0)
    slow_limit["cases"]["L:RGB"]["sizes"]["1"]["limit"]["images_per_s"] = 2_100.0
    assert not photo_report.goals(slow_limit)[0]["met"]  # 76% of the limit
    assert not photo_report.goals(_report(1_600.0))[1]["met"]  # single: 2.25x today's


def test_the_page_has_the_goals_tables_and_machine(tmp_path: Path) -> None:
    report = _report(1_600.0)
    page = photo_report.markdown(report)
    assert "### grey 128x128 model, RGB JPEGs, 1 MP" in page
    assert "| this service, reduced decode, 8 a request, -c8 | 1,600 | 200.0 |" in page
    assert "| met |" in page and "| NOT met |" in page
    assert "python pytest 40 s" in page and "(25% of the available CPUs)" in page
    assert "Failed requests (non-2xx, timeouts, socket errors): none." in page
    report["cases"]["L:RGB"]["sizes"]["1"]["servers"]["plain"]["single"]["errors_status"] = 3
    assert "plain FastAPI single: 3." in photo_report.markdown(report)
    photo_report.plot(report, tmp_path / "photos.png")
    assert (tmp_path / "photos.png").stat().st_size > 1000
