"""What the machine has (CPU, one GPU, several GPUs), which precision to train in, and how to launch.

* CPU: TRL 1.16's configs default to bf16 and refuse to start on a CPU-only machine,
  so precision is always set explicitly from here. A CPU that computes bf16 natively
  (Intel AMX or AVX512-BF16: Sapphire Rapids and newer Xeons, AMD Zen 4 and newer)
  trains in bf16 under ``auto``: autocast on the CPU, the frozen base held in bf16,
  LoRA weights in fp32. Measured (benchmarks/bench_training.py --settings
  project,project-fp32, then named project-bf16,project): on a 2-core AMX Xeon a 2048² matmul 6.8x as fast as fp32, the
  default recipe's SFT 1.39x and DPO 1.77x the tokens/s; on a 2-core AMD EPYC with
  AVX512-BF16 and no AMX, the matmul 2.6x, SFT 1.2-1.4x and DPO 1.3-1.7x
  (docs/measured/cpu-bf16-zen4-2026-12-06.txt); and bf16 training reproduced fp32's
  losses and answers (run64kb beside run64k). Any other CPU trains in fp32; it would
  emulate bf16, slower than fp32, so bf16 is refused there. ``fp32`` stays a choice.
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
    bf16_supported: bool  # computes bf16 natively (a GPU since Ampere; a CPU with AMX or AVX512-BF16)
    cpu_count: int
    memory_gb: float | None  # GPU memory of device 0, or None on CPU
    cpu_limit: str = ""  # what gives this process fewer cores than the machine (a container's quota, a cpuset)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.kind == "cpu":
            limit = f": {self.cpu_limit}" if self.cpu_limit else ""
            cores = f"{self.cpu_count} core{'' if self.cpu_count == 1 else 's'}"
            return f"CPU only ({cores}{limit}{', native bf16' if self.bf16_supported else ''})"
        memory = f", {self.memory_gb:.0f} GB" if self.memory_gb else ""
        return f"{self.device_count} x {self.device_name}{memory}"


CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies bf16 in hardware (Linux ``/proc/cpuinfo`` flags; elsewhere: no)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
                cpuinfo = handle.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return any(flag in flags for flag in CPU_BF16_FLAGS)
    return False


def detect_hardware() -> Hardware:
    import torch

    from r2ta.cpu import limit_note, usable_cores

    cpu_count = usable_cores()  # a container's cpuset or CPU quota, not the host's cores
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return Hardware("cpu", 0, "cpu", cpu_has_native_bf16(), cpu_count, None, limit_note())
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
    on_cpu: bool = False  # bf16 autocast on a CPU: transformers wants use_cpu said, or refuses bf16

    def config_overrides(self) -> dict:
        return {"bf16": self.bf16, "fp16": self.fp16, **({"use_cpu": True} if self.on_cpu else {})}


def resolve_precision(requested: str, hardware: Hardware) -> Precision:
    """The precision to train in: ``requested`` if the hardware supports it; ``auto`` picks the best one."""
    if requested not in PRECISIONS:
        raise TrainingError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        if hardware.kind == "cpu":
            requested = "bf16" if hardware.bf16_supported else "fp32"
        else:
            requested = "bf16" if hardware.bf16_supported else "fp16"
    if requested == "fp32":
        return Precision("fp32", bf16=False, fp16=False, dtype="float32")
    if hardware.kind == "cpu" and requested == "fp16":
        raise TrainingError("precision fp16 needs a GPU, and this machine has none; use --precision fp32 (or auto)")
    if hardware.kind == "cpu" and not hardware.bf16_supported:
        raise TrainingError(
            "precision bf16 on a CPU needs one that computes bf16 natively (Intel AMX or AVX512-BF16); this one "
            "would emulate it, slower than fp32: use --precision fp32 (or auto)"
        )
    if requested == "bf16":
        if not hardware.bf16_supported:
            raise TrainingError(f"{hardware.device_name} has no bf16; use --precision fp16 or auto")
        # LoRA adapters stay fp32 (PEFT upcasts them); the frozen base is held in bf16.
        return Precision("bf16", bf16=True, fp16=False, dtype="bfloat16", on_cpu=hardware.kind == "cpu")
    # fp16 mixed precision needs fp32 master weights: the base is loaded in fp32.
    return Precision("fp16", bf16=False, fp16=True, dtype="float32")


def precision_choices(hardware: Hardware) -> list[str]:
    """The precisions a run can ask for on ``hardware``, the one ``auto`` picks first."""
    if hardware.kind == "cpu":
        return ["bf16", "fp32"] if hardware.bf16_supported else ["fp32"]
    return ["bf16", "fp16", "fp32"] if hardware.bf16_supported else ["fp16", "fp32"]


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
