"""The service's configuration: one typed `Settings` read from `DEEPSVDD_*` variables; its
execution providers alone (`ProviderSettings`) for tools that run models without serving."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import onnxruntime as ort
from PIL import Image
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelfile.metadata import NAME_PATTERN, is_valid_name
from service.cpus import available_cpus

CPU_PROVIDER = "CPUExecutionProvider"
# `DEEPSVDD_WORKERS=auto` (or 0, the default) starts one worker per available CPU, up to this:
# each worker holds every model and its own batch queue, so past a few the batches thin out.
MAX_AUTO_WORKERS = 8


class ProviderSettings(BaseSettings):
    """`DEEPSVDD_PROVIDERS`, parsed and checked here only. A tool that loads a model outside
    the service (no models directory, no app) reads it alone, as the service does:
    `ProviderSettings().provider_preference`. A bad value raises a `ValueError` naming it."""

    model_config = SettingsConfigDict(env_prefix="DEEPSVDD_", extra="ignore")

    # ONNX Runtime execution providers in order of preference; CPU is always the last resort.
    providers: str = "CUDAExecutionProvider,CPUExecutionProvider"

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: str) -> str:
        names = [p.strip() for p in value.split(",") if p.strip()]
        if not names:
            raise ValueError("providers must name at least one ONNX Runtime execution provider")
        known = set(ort.get_all_providers())
        unknown = [p for p in names if p not in known]
        if unknown:
            raise ValueError(f"providers {unknown} are not ONNX Runtime execution providers")
        return ",".join(names)

    @property
    def provider_preference(self) -> list[str]:
        """The configured providers in order, with the CPU provider moved to the end."""
        names = [p for p in self.providers.split(",") if p != CPU_PROVIDER]
        return [*names, CPU_PROVIDER]


class Settings(ProviderSettings):
    """Validated when built: a bad value raises a `ValueError` that names the setting."""

    models_dir: Path = Path("models")
    # None: the first model name in sorted order.
    default_model: str | None = None
    max_batch: int = Field(default=64, ge=1, le=4096)
    # 0 (Triton's default too): a run takes whatever queued while the previous one ran, so
    # batches grow with the load and a lone request never waits. A few ms buy bigger
    # batches at low load, which pays on a GPU (measured on the CPU: bench/serving/serving.md).
    max_delay_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)
    max_queue: int = Field(default=1024, ge=1, le=1_000_000)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, le=1024**3)
    max_images: int = Field(default=256, ge=1, le=100_000)
    # Images per request with explain=true on a model without a map output: each occlusion
    # map costs 1 + 169 inferences (service.explain). A patch model's maps come with its scores.
    max_explain_images: int = Field(default=4, ge=1, le=1000)
    # Above PIL's own decompression-bomb limit, PIL refuses the image before we could.
    max_pixels: int = Field(default=40_000_000, ge=1, le=Image.MAX_IMAGE_PIXELS)
    # The request head: its header lines together (431 past it; the request target alone,
    # 414), and how many header lines it may have (431). Below httptools' own 64 KiB URL limit,
    # which would answer in plain text.
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=60 * 1024)
    max_headers: int = Field(default=100, ge=8, le=10_000)
    # Seconds a request body may go without a byte arriving; then 408 and the connection closes.
    body_timeout_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    admin_token: SecretStr | None = None
    # The token read from this file at start-up (a mounted Kubernetes Secret) instead; no
    # file there means no token, as an optional Secret that does not exist. Not with admin_token.
    admin_token_file: Path | None = None
    # 0 or "auto": one per CPU available (affinity and cgroup quota), at most MAX_AUTO_WORKERS.
    workers: int = Field(default=0, ge=0, le=256)
    # After SIGTERM: seconds of answering with readiness failing, so that load balancers and
    # Kubernetes endpoints stop routing here before the listener closes; 0 closes it at once.
    drain_s: float = Field(default=5.0, ge=0.0, le=3600.0)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # The Open Inference Protocol over gRPC (service.oip_grpc), Triton's port; 0 turns it off.
    grpc_port: int = Field(default=8001, ge=0, le=65535)
    # 0: the CPUs this process may use (service.cpus), shared out between the workers.
    intra_op_threads: int = Field(default=0, ge=0, le=1024)
    # Drift window of each served version (service.drift): at most this many recent scores,
    # none older than drift_window_s seconds; 0 in either turns drift off.
    drift_window: int = Field(default=1000, ge=0, le=1_000_000)
    drift_window_s: float = Field(default=900.0, ge=0.0, le=7 * 86400.0)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # uvicorn's line per request: formatting and writing it cost a measurable share of a
    # single-image request (bench/serving/serving.md); the request metrics count every request
    # anyway.
    access_log: bool = False

    @field_validator("models_dir")
    @classmethod
    def _models_dir_exists(cls, path: Path) -> Path:
        if not path.is_dir():
            raise ValueError(f"models_dir {str(path)!r} is not a directory")
        return path

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_workers(cls, value: object) -> object:
        return 0 if isinstance(value, str) and value.strip().lower() == "auto" else value

    @field_validator("default_model")
    @classmethod
    def _default_model_is_a_name(cls, name: str | None) -> str | None:
        if name == "":
            return None
        if name is not None and not is_valid_name(name):
            raise ValueError(f"default_model {name!r} must match {NAME_PATTERN}")
        return name

    @field_validator("admin_token")
    @classmethod
    def _empty_token_is_none(cls, token: SecretStr | None) -> SecretStr | None:
        if token is None or token.get_secret_value() == "":
            return None
        if len(token.get_secret_value()) < 8:
            raise ValueError("admin_token must have at least 8 characters")
        return token

    @model_validator(mode="after")
    def _read_admin_token_file(self) -> Settings:
        if self.admin_token_file is None:
            return self
        if self.admin_token is not None:
            raise ValueError("admin_token and admin_token_file are mutually exclusive: set one")
        path = self.admin_token_file
        if not path.exists():
            return self
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"admin_token_file {str(path)!r} cannot be read: {exc}") from None
        try:
            self.admin_token = self._empty_token_is_none(SecretStr(token))
        except ValueError as exc:
            raise ValueError(f"admin_token_file {str(path)!r}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _resolve_auto_workers(self) -> Settings:
        if self.workers == 0:
            self.workers = min(available_cpus(), MAX_AUTO_WORKERS)
        return self

    @model_validator(mode="after")
    def _limits_fit_together(self) -> Settings:
        if self.max_images > self.max_queue:
            raise ValueError(
                f"max_images ({self.max_images}) must not exceed max_queue ({self.max_queue}): "
                "such a request could never be queued"
            )
        return self

    @property
    def cpu_threads(self) -> int:
        """Intra-op threads for each ONNX Runtime session of one worker."""
        if self.intra_op_threads:
            return self.intra_op_threads
        return max(1, available_cpus() // self.workers)

    def to_env(self) -> dict[str, str]:
        """The environment that rebuilds these settings in another process (uvicorn workers)."""
        env: dict[str, str] = {}
        for field, value in self.model_dump().items():
            if value is None or (field == "admin_token" and self.admin_token_file is not None):
                continue  # a token from a file is read from it again
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            env[f"DEEPSVDD_{field.upper()}"] = text
        return env


def describe_error(exc: ValueError) -> str:
    """One line naming each bad setting and what is wrong (pydantic's own text spans lines)."""
    if not isinstance(exc, ValidationError):
        return " ".join(str(exc).split())
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        message = " ".join(error["msg"].removeprefix("Value error, ").split())
        problems.append(f"{where}: {message}")
    return "; ".join(problems)
