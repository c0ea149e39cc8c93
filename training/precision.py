"""How a training step computes: fp32 or bf16 autocast, channels-last or the standard memory
layout, resolved once per phase for its device. Whatever the precision, the parameters, the
centre c and the distances ||phi(x) - c||^2 stay fp32 (the collapse guards do not change).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from training.config import Precision, TrainConfig

# CPU flags (Linux /proc/cpuinfo) of the instructions that compute bf16 products in hardware.
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first processor's feature flags; empty where the kernel does not list them."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return frozenset()
    flags = next((line for line in lines if line.startswith("flags")), "")
    return frozenset(flags.partition(":")[2].split())


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: a CUDA GPU of compute capability 8.0 or
    above, or a CPU with AMX or AVX-512-BF16 whose oneDNN has bf16 kernels. Elsewhere bf16
    is emulated: on an AVX2 CPU a training step is 2 to 17 times slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if not cpu_flags() & NATIVE_BF16_FLAGS:
        return False
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: Precision, device: torch.device) -> Literal["fp32", "bf16"]:
    """`auto` -> bf16 where the device computes it natively, else fp32; the others as given."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def resolve_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """None -> channels-last on the CPU (oneDNN's convolutions skip a reordering per layer,
    measured faster in bench/train_speed) and the standard layout on CUDA."""
    return device.type == "cpu" if channels_last is None else channels_last


def resolved(cfg: TrainConfig) -> TrainConfig:
    """`cfg` (device already resolved) with its precision and layout made concrete. The patch
    model's own loop (training/patch/fit.py) trains in fp32 and the standard layout: asking
    it for bf16 or channels-last is an error, `auto` and the default resolve to those."""
    device = torch.device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    channels_last = resolve_channels_last(cfg.channels_last, device)
    if cfg.model == "patch":
        if cfg.precision == "bf16" or cfg.channels_last:
            raise ValueError(
                "--precision bf16 and --channels-last apply to --model image; the patch model "
                "trains in fp32 and the standard layout"
            )
        precision, channels_last = "fp32", False
    return replace(cfg, precision=precision, channels_last=channels_last)


@dataclass(frozen=True)
class Compute:
    """A phase's arithmetic and layout: `place` the model, then for each step `batch` the
    images and run the forward pass under `autocast`; cast its output to fp32 after it."""

    device_type: str
    bf16: bool
    layout: torch.memory_format

    @classmethod
    def of(cls, cfg: TrainConfig, device: torch.device) -> Compute:
        bf16 = resolve_precision(cfg.precision, device) == "bf16"
        last = resolve_channels_last(cfg.channels_last, device)
        return cls(device.type, bf16, torch.channels_last if last else torch.contiguous_format)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """bf16 autocast for the forward pass (parameters and gradients stay fp32), or nothing."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """The batch in the phase's layout (no copy when it is already in it)."""
        return x.contiguous(memory_format=self.layout)

    def place(self, model: nn.Module) -> None:
        """The model's weights in the phase's layout; `standard_layout` undoes it."""
        model.to(memory_format=self.layout)  # type: ignore[call-overload]  # not in the stubs


def standard_layout(model: nn.Module) -> None:
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
