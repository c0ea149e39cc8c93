"""Issue 17, finding 6: execution providers are probed once per process, quietly: a machine
without CUDA gets one line naming the active provider, not ONNX Runtime's error at each load."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

from service.providers import CPU, CUDA, _identity_model, probe_providers
from tests.support.models import ModelRepo
from tests.support.processes import start_process, stop_process
from tests.support.servers import ADMIN_TOKEN, AUTH, free_port, service_env, wait_ready


def test_the_probe_model_runs() -> None:
    session = ort.InferenceSession(_identity_model(), providers=[CPU])
    (y,) = session.run(None, {"x": np.array([2.5], dtype=np.float32)})
    assert y.tolist() == [2.5]


def test_probed_once_cpu_last_and_every_skip_explained() -> None:
    preference = (CUDA, CPU)
    probe = probe_providers(preference)
    assert probe_providers(preference) is probe
    assert probe.providers[-1] == CPU
    assert set(probe.providers) | set(probe.skipped) == set(preference)
    assert all(reason for reason in probe.skipped.values())
    assert probe.describe().startswith(f"ONNX Runtime {ort.__version__}: {probe.providers[0]}")
    unknown = probe_providers(("NoSuchExecutionProvider", CPU))
    assert unknown.providers == [CPU]
    assert unknown.skipped == {"NoSuchExecutionProvider": "not in this ONNX Runtime build"}


def test_serve_start_and_reload_log_the_provider_once_and_no_onnxruntime_errors(
    model_repo: ModelRepo, tmp_path: Path
) -> None:
    port = free_port()
    env = service_env(model_repo.path, port)
    env.update(
        DEEPSVDD_PROVIDERS=f"{CUDA},{CPU}",  # the default: CUDA first wherever it exists
        DEEPSVDD_LOG_LEVEL="info",
        DEEPSVDD_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    log = tmp_path / "serve.log"
    deepsvdd = Path(sys.executable).parent / "deepsvdd"
    process = start_process([str(deepsvdd), "serve", "--port", str(port)], env, log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process=process)
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(2):
                assert client.post("/admin/reload", headers=AUTH).status_code == 200
    finally:
        stop_process(process)
    text = log.read_text()
    assert "[E:onnxruntime" not in text, text
    assert "[W:onnxruntime" not in text, text
    lines = [line for line in text.splitlines() if f"ONNX Runtime {ort.__version__}:" in line]
    assert len(lines) == 1, text
    assert "INFO" in lines[0] and "active" in lines[0]
    if CUDA not in probe_providers((CUDA, CPU)).providers:
        assert f"{CPU} active ({CUDA} unavailable:" in lines[0]
