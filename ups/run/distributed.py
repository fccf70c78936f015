"""Ranks started by a cluster launcher (torchrun, SLURM's srun), and the commands that start them.

Lightning's own DDP launcher starts the other ranks itself, after rank 0 made the tracked run, and hands them its id
through `UPS_RUN_ID`. A cluster launcher starts every rank at once, so nobody could export that id beforehand: here
the process group starts first (Lightning then uses it as it is), rank 0 prepares the data and the run, and the run id
reaches the other ranks by broadcast.
"""

from __future__ import annotations

import datetime
import os
import shlex
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT_ENV = "UPS_DIST_TIMEOUT_S"
"""Seconds a collective may wait for a rank (default 1800: data generation on rank 0 runs inside one)."""


def global_rank(devices: int) -> int:
    """This process's rank before torch.distributed exists (Lightning's launcher, torchrun or SLURM set these)."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return int(env["SLURM_PROCID"])
    node = int(env.get("NODE_RANK", env.get("GROUP_RANK", "0")))
    return node * devices + int(env.get("LOCAL_RANK", "0"))


def cluster_environment():
    """Lightning's environment for torchrun or srun when they started this process (else None)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        return TorchElasticEnvironment()
    if SLURMEnvironment.detect() and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return SLURMEnvironment()
    return None


def start_process_group(accelerator: str) -> bool:
    """Start the process group when a cluster launcher started several ranks (True), else do nothing (False)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return True
    env = cluster_environment()
    if env is None or env.world_size() < 2:
        return False
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = env.main_address, str(env.main_port)
    backend = "cpu:gloo,cuda:nccl" if accelerator == "gpu" else "gloo"
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "1800")))
    dist.init_process_group(backend, rank=env.global_rank(), world_size=env.world_size(), timeout=timeout)
    return True


def rank_zero_first(launched: bool, rank: int, make: Callable[[], T]) -> T:
    """`make()` on rank 0 first (it may write the data cache), then on the other ranks (they read it)."""
    if not launched:
        return make()
    import torch.distributed as dist

    if rank != 0:
        dist.barrier()
        return make()
    try:
        return make()
    finally:
        dist.barrier()  # also when rank 0 failed: the others then fail on their own, instead of waiting


def broadcast_from_zero(rank: int, make: Callable[[], T], share: Callable[[T], str]) -> tuple[T | None, str]:
    """Rank 0 calls `make()` and broadcasts `share(result)`; every rank returns (result or None, shared string).
    If `make` fails on rank 0, the other ranks raise instead of waiting forever."""
    import torch.distributed as dist

    box: list[str | None] = [None]
    result = None
    if rank == 0:
        try:
            result = make()
            box[0] = share(result)
        finally:
            dist.broadcast_object_list(box, src=0)
    else:
        dist.broadcast_object_list(box, src=0)
        if box[0] is None:
            raise RuntimeError("rank 0 failed before training started (see its log)")
    return result, box[0]


def agree_on_zero(rank: int, make: Callable[[], T]) -> T | None:
    """Rank 0 calls `make()`; if it raises, every rank raises the same one-line error at once (a SpecError stays a
    SpecError: exit 2 on every rank). Returns rank 0's result there, None elsewhere."""
    import torch.distributed as dist

    from ups.spec.errors import SpecError

    box: list = [None]
    result = None
    if rank == 0:
        try:
            result = make()
        except SpecError as exc:
            box[0] = ("spec", str(exc))
            raise
        except BaseException as exc:
            box[0] = ("other", f"{exc.__class__.__name__}: {exc}")
            raise
        finally:
            dist.broadcast_object_list(box, src=0)
        return result
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        kind, message = box[0]
        if kind == "spec":
            raise SpecError(message.rstrip("."))
        raise RuntimeError(f"rank 0 failed: {message}")
    return None


def launch_command(spec, spec_file: str, overrides: list[str] | tuple[str, ...], launcher: str) -> str:
    """The torchrun or srun command that runs `ups-exp run` for the profile on every node."""
    h = spec.hardware
    cli = ["-m", "ups.cli", "run", spec_file, *overrides]
    if launcher == "srun":
        gpus = [f"--gpus-per-node={h.devices}"] if h.accelerator == "gpu" else []
        cmd = [
            "srun",
            f"--nodes={h.num_nodes}",
            f"--ntasks-per-node={h.devices}",
            *gpus,
            "python",
            *cli,
        ]
    elif h.num_nodes == 1:
        cmd = ["torchrun", "--standalone", f"--nproc-per-node={h.devices}", *cli]
    else:
        cmd = [
            "torchrun",
            f"--nnodes={h.num_nodes}",
            f"--nproc-per-node={h.devices}",
            "--rdzv-backend=c10d",
            "--rdzv-endpoint=$MAIN_NODE:29500",
            "--rdzv-id=$JOB_ID",
            *cli,
        ]
    return " ".join(a if a.startswith("--rdzv") else shlex.quote(a) for a in cmd)
