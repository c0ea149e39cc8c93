"""bench/serving/profile.py: py-spy's raw stacks put into groups, and the table made of them."""

from __future__ import annotations

from pathlib import Path

from bench.serving.profile import OTHER, group_of, markdown, read_raw

ROOT = 'process 7:"python -m service";run (uvicorn/server.py:70)'


def test_the_innermost_known_frame_names_the_group() -> None:
    to_input = f"{ROOT};score (service/routers/score.py:9);to_input (modelfile/pixels.py:12)"
    assert group_of(f"{to_input};stack (numpy/_core/shape_base.py:465)") == "uint8 to float tensor"
    assert group_of(f"{ROOT};_answer (service/routers/score.py:3)") == "answer (orjson, Response)"
    assert group_of(f"{ROOT};score (service/routers/score.py:3)") == "score route, rest"
    assert group_of(f"{ROOT}") == "uvicorn (HTTP parsing, sending)"
    assert group_of('process 7:"x";main (elsewhere.py:1)') == OTHER


def test_raw_lines_add_up_by_group(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(
        f"{ROOT};run (onnxruntime/capi/session.py:2) 30\n"
        f"{ROOT};fast_png (service/decoding.py:80) 10\n"
        f"{ROOT};load (PIL/ImageFile.py:1) 5\n"
    )
    counts = read_raw(raw)
    assert counts == {"ONNX Runtime run": 30, "image decode (libspng / Pillow)": 15}


def test_the_table_gives_us_per_image_and_shares() -> None:
    report = {
        "date": "2026-12-07 13:00 UTC",
        "command": "python -m bench.serving --profile",
        "rate": 100,
        "seconds": 5,
        "loads": {
            "batched": {"images_per_s": 1000.0, "us_per_image": {"a": 30.0, "b": 10.0}},
            "single": {"images_per_s": 100.0, "us_per_image": {"b": 300.0}},
        },
    }
    page = markdown(report)
    assert "| b | 10.0 | 25% | 300.0 | 100% |" in page
    assert "| a | 30.0 | 75% | 0.0 | 0% |" in page
    assert "**40.0**" in page and "**300.0**" in page
