"""Does this machine have what the hardware profile needs? Checked by `validate`, `run` and `sweep` before any data,
tracking or file is touched. Torch-free (`validate` stays fast): GPUs are counted from the device nodes the
NVIDIA driver creates, narrowed by `CUDA_VISIBLE_DEVICES`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ups.spec.errors import SpecError


def visible_gpus() -> int:
    """GPUs this process may use. `UPS_FAKE_GPUS=N` replaces the probe (tests, dry runs of GPU profiles)."""
    return len(visible_gpu_ids())


def visible_gpu_ids() -> list[str]:
    """The ids this process may put in `CUDA_VISIBLE_DEVICES`: the driver's devices, narrowed by that variable
    (`UPS_FAKE_GPUS=N` stands for N present devices)."""
    fake = os.environ.get("UPS_FAKE_GPUS")
    if fake is not None:
        present = int(fake)
    else:
        present = sum(1 for p in Path("/dev").glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(present)]
    listed = []
    for d in (d.strip() for d in visible.split(",")):
        if not d or d == "-1":
            break  # CUDA stops at the first invalid entry
        listed.append(d)
    return listed[:present]


def check_machine(spec, *, profile: str | None, file: str | None) -> None:
    """SpecError (exit 2, one line naming the profile and what is missing) when the machine cannot run it."""
    h = spec.hardware
    name = f"hardware profile {profile!r}" if profile else "the hardware profile"
    if h.accelerator != "gpu":
        return
    have = visible_gpus()
    if have < h.devices:
        has = "none" if have == 0 else f"only {have}"
        raise SpecError(
            f"{name} needs {h.devices} GPU{'s' if h.devices > 1 else ''} per node; this machine has {has} visible",
            file=file,
            key="hardware.devices",
            got=h.devices,
            hint="Use hardware=cpu (or cpu_ddp2), or run where the GPUs are (CUDA_VISIBLE_DEVICES narrows them).",
        )
