"""Settings: defaults, the environment, and clear errors for bad values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.cpus import available_cpus
from service.settings import MAX_AUTO_WORKERS, ProviderSettings, Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("DEEPSVDD_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    settings = Settings()
    assert settings.models_dir == Path("models")
    assert settings.default_model is None
    assert settings.provider_preference == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert (settings.max_batch, settings.max_queue, settings.max_images) == (64, 1024, 256)
    assert settings.admin_token is None and settings.access_log is False
    assert settings.workers == min(available_cpus(), MAX_AUTO_WORKERS)
    assert settings.cpu_threads >= 1


def test_the_environment_sets_every_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "DEEPSVDD_MODELS_DIR": str(tmp_path),
        "DEEPSVDD_DEFAULT_MODEL": "digits",
        "DEEPSVDD_PROVIDERS": "CPUExecutionProvider, TensorrtExecutionProvider",
        "DEEPSVDD_MAX_BATCH": "8",
        "DEEPSVDD_MAX_DELAY_MS": "5",
        "DEEPSVDD_MAX_QUEUE": "100",
        "DEEPSVDD_MAX_BODY_BYTES": "2048",
        "DEEPSVDD_MAX_IMAGES": "10",
        "DEEPSVDD_MAX_PIXELS": "1000",
        "DEEPSVDD_ADMIN_TOKEN": "a-long-secret",
        "DEEPSVDD_WORKERS": "2",
        "DEEPSVDD_INTRA_OP_THREADS": "3",
        "DEEPSVDD_LOG_LEVEL": "DEBUG",
        "DEEPSVDD_ACCESS_LOG": "true",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.models_dir == tmp_path and s.default_model == "digits"
    assert s.provider_preference == ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    assert (s.max_batch, s.max_delay_ms, s.max_queue, s.max_body_bytes) == (8, 5.0, 100, 2048)
    assert (s.max_images, s.max_pixels, s.workers, s.cpu_threads) == (10, 1000, 2, 3)
    assert s.admin_token is not None and s.admin_token.get_secret_value() == "a-long-secret"
    assert s.log_level == "debug" and s.access_log is True
    assert "a-long-secret" not in repr(s)
    for key in env:
        monkeypatch.delenv(key)
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    assert Settings() == s


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("models_dir", "/nonexistent/models", "models_dir"),
        ("providers", "NoSuchExecutionProvider", "providers"),
        ("providers", " , ", "providers"),
        ("max_batch", 0, "max_batch"),
        ("max_queue", -1, "max_queue"),
        ("max_images", 5000, "max_images"),
        ("max_pixels", 10**12, "max_pixels"),
        ("default_model", "../etc", "default_model"),
        ("admin_token", "short", "admin_token"),
        ("workers", -1, "workers"),
        ("workers", "many", "workers"),
        ("port", 70000, "port"),
        ("log_level", "loud", "log_level"),
    ],
)
def test_bad_values_name_the_setting(field: str, value: object, named: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=named):
        Settings(**{"models_dir": tmp_path, field: value})  # type: ignore[arg-type]


def test_an_empty_admin_token_means_none(tmp_path: Path) -> None:
    assert Settings(models_dir=tmp_path, admin_token="").admin_token is None  # type: ignore[arg-type]


def test_cpu_threads_are_shared_between_workers(tmp_path: Path) -> None:
    one, many = Settings(models_dir=tmp_path), Settings(models_dir=tmp_path, workers=64)
    assert one.cpu_threads >= many.cpu_threads >= 1


def test_the_providers_are_read_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As an offline tool reads them: no models directory, and no other setting is checked."""
    monkeypatch.chdir(tmp_path)  # no models/ here, which Settings() would refuse
    monkeypatch.setenv("DEEPSVDD_MAX_BATCH", "0")
    monkeypatch.delenv("DEEPSVDD_PROVIDERS", raising=False)
    cuda_then_cpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ProviderSettings().provider_preference == cuda_then_cpu
    monkeypatch.setenv("DEEPSVDD_PROVIDERS", "CPUExecutionProvider, CUDAExecutionProvider")
    assert ProviderSettings().provider_preference == cuda_then_cpu
    monkeypatch.setenv("DEEPSVDD_PROVIDERS", "NoSuchExecutionProvider")
    with pytest.raises(ValueError, match="providers"):
        ProviderSettings()


def test_the_admin_token_is_read_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in [k for k in os.environ if k.startswith("DEEPSVDD_")]:
        monkeypatch.delenv(key)
    token = tmp_path / "token"
    token.write_text("a-long-secret-from-a-file\n")
    monkeypatch.setenv("DEEPSVDD_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("DEEPSVDD_ADMIN_TOKEN_FILE", str(token))
    s = Settings()
    assert s.admin_token is not None
    assert s.admin_token.get_secret_value() == "a-long-secret-from-a-file"
    env = s.to_env()
    assert "DEEPSVDD_ADMIN_TOKEN" not in env  # the workers read the file again
    assert "a-long-secret-from-a-file" not in repr(s) + repr(env)
    monkeypatch.delenv("DEEPSVDD_ADMIN_TOKEN_FILE")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings() == s


def test_an_admin_token_file_is_checked(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("a-long-secret")
    with pytest.raises(ValueError, match="mutually exclusive"):
        Settings(models_dir=tmp_path, admin_token="another-secret", admin_token_file=token)  # type: ignore[arg-type]
    token.write_text("short")
    with pytest.raises(ValueError, match=r"admin_token_file .*8 characters"):
        Settings(models_dir=tmp_path, admin_token_file=token)
    # As an optional Kubernetes Secret that does not exist: no file, no token, no admin routes.
    assert Settings(models_dir=tmp_path, admin_token_file=tmp_path / "absent").admin_token is None
    (tmp_path / "directory").mkdir()
    with pytest.raises(ValueError, match="cannot be read"):
        Settings(models_dir=tmp_path, admin_token_file=tmp_path / "directory")
