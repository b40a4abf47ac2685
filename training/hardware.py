"""What the machine has (CPU, one GPU, several GPUs), which precision to train in, and how to launch.

* CPU: fp32 everywhere (TRL 1.16's configs default to bf16 and refuse to start on
  a CPU-only machine, so precision is always set explicitly from here).
* One GPU: bf16 where the GPU has it (Ampere and newer), else fp16 mixed precision.
* Several GPUs: the same precision, one process per GPU through
  ``accelerate launch`` (DDP); :func:`launch_command` says how.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import asdict, dataclass

from r2ta.jobs import TrainingError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Hardware:
    """The accelerators this process can see."""

    kind: str  # "cpu" | "gpu" | "multi-gpu"
    device_count: int
    device_name: str
    bf16_supported: bool
    cpu_count: int
    memory_gb: float | None  # GPU memory of device 0, or None on CPU

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.kind == "cpu":
            return f"CPU only ({self.cpu_count} cores)"
        memory = f", {self.memory_gb:.0f} GB" if self.memory_gb else ""
        return f"{self.device_count} x {self.device_name}{memory}"


def detect_hardware() -> Hardware:
    import torch

    cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return Hardware("cpu", 0, "cpu", False, cpu_count, None)
    count = torch.cuda.device_count()
    props = torch.cuda.get_device_properties(0)
    return Hardware(
        kind="gpu" if count == 1 else "multi-gpu",
        device_count=count,
        device_name=torch.cuda.get_device_name(0),
        bf16_supported=bool(torch.cuda.is_bf16_supported()),
        cpu_count=cpu_count,
        memory_gb=props.total_memory / 2**30,
    )


@dataclass(frozen=True)
class Precision:
    """Settings for ``SFTConfig``/``DPOConfig`` (``bf16``, ``fp16``) and ``ModelConfig.dtype``."""

    name: str  # "fp32" | "bf16" | "fp16"
    bf16: bool
    fp16: bool
    dtype: str  # dtype the base weights are loaded in

    def config_overrides(self) -> dict:
        return {"bf16": self.bf16, "fp16": self.fp16}


def resolve_precision(requested: str, hardware: Hardware) -> Precision:
    """The precision to train in: ``requested`` if the hardware supports it; ``auto`` picks the best one."""
    if requested not in PRECISIONS:
        raise TrainingError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        if hardware.kind == "cpu":
            requested = "fp32"
        else:
            requested = "bf16" if hardware.bf16_supported else "fp16"
    if requested == "fp32":
        return Precision("fp32", bf16=False, fp16=False, dtype="float32")
    if hardware.kind == "cpu":
        raise TrainingError(
            f"precision {requested} needs a GPU, and this machine has none; use --precision fp32 (or auto)"
        )
    if requested == "bf16":
        if not hardware.bf16_supported:
            raise TrainingError(f"{hardware.device_name} has no bf16; use --precision fp16 or auto")
        # LoRA adapters stay fp32 (PEFT upcasts them); the frozen base is held in bf16.
        return Precision("bf16", bf16=True, fp16=False, dtype="bfloat16")
    # fp16 mixed precision needs fp32 master weights: the base is loaded in fp32.
    return Precision("fp16", bf16=False, fp16=True, dtype="float32")


def distributed_world_size() -> int:
    """How many processes this one is part of (set by ``accelerate launch`` / ``torchrun``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def launch_command(module_args: list[str], num_processes: int) -> list[str]:
    """The command that runs ``python -m <module_args>`` on ``num_processes`` GPUs.

    One process: plain ``python -m``. Several: ``accelerate launch --multi_gpu
    --num_processes N -m ...`` (DDP). For FSDP or DeepSpeed, write an accelerate
    config (``accelerate config``) and add ``--config_file`` to this command.
    """
    if num_processes <= 1:
        return [sys.executable, "-m", *module_args]
    accelerate = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
    return [accelerate, "launch", "--multi_gpu", "--num_processes", str(num_processes), "-m", *module_args]
