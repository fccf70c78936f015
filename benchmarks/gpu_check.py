"""The GPU check (run by benchmarks/gpu_check.sh): what the hardware profiles do on a machine with GPUs.

Arms, in one process each, side by side in one run:
- `fp32`, `bf16`, `bf16+compile`: one GPU, training samples/s of the flagship operator (`operator_small`) with the
  training step `ups-exp run` uses (unrolled rollout loss, backward, clip, AdamW), `--batch` windows of 256
  points; bf16 is `torch.autocast` as `hardware.precision: bf16-mixed` does (FFTs stay fp32); compile is
  `compile_guarded`, as `hardware.compile: true` does. Peak memory is `torch.cuda.max_memory_allocated`.
- `ddp xN`: the same step under DistributedDataParallel over all N visible GPUs (torchrun), `--batch` per GPU:
  global samples/s, and its scaling over `fp32` (N = perfect).
- `run ddp`: `ups-exp run` of a small Burgers spec on the `2gpu_ddp` profile with all N GPUs (end to end: exit
  code, test nRMSE against persistence).
- `run fsdp`: the same on `4gpu_fsdp` with min(N, 4) GPUs, then its checkpoint loaded strictly into a one-device
  model (what promote, eval and export do).

`--device cpu` runs every arm on the CPU (small, gloo, cpu/cpu_ddp2 profiles; FSDP is skipped: it needs GPUs) to
check the script itself on a machine without GPUs. The table is printed last; the line before it is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from _ups import provenance_line, run_group

ROOT = Path(__file__).resolve().parent.parent

SMALL_SPEC = """\
name: gpucheck
seed: 0
data:
  from: burgers1d
  num_trajectories: 64
  num_points: 128
  num_frames: 31
  generator: {solver_points: 256}
model: operator_tiny
train: {max_epochs: 2, batch_size: 32, lr: 3.0e-3, unroll_steps: 2, batches_per_epoch: 20}
eval: {context_frames: 5, horizon: 20, report_horizons: [1, 10]}
tracking: local
"""

SMALL_SPEC_2D = """\
name: gpucheck2d
seed: 0
data: {from: ns2d, num_trajectories: 32, num_points: 32, num_frames: 6, generator: {solver_points: 32, burn_in: 2.0}}
model: {kind: fno, width: 16, num_layers: 2, num_modes: 8, cond_dim: 8, projection_dim: 32}
train: {max_epochs: 2, batch_size: 8, lr: 3.0e-3, unroll_steps: 1, batches_per_epoch: 10}
eval: {context_frames: 1, horizon: 4, report_horizons: [1, 4]}
tracking: local
"""
"""The 2D row: a small Navier–Stokes (vorticity) run with a 2D FNO, end to end."""


def _model_and_step(device: torch.device, args, *, bf16: bool, compiled: bool, ddp: bool = False):
    from ups.models.config import LatentOperatorConfig
    from ups.models.operator import LatentOperator
    from ups.models.wrap import Normalized
    from ups.plugin import ModelIO
    from ups.spec.stages import LossConfig
    from ups.training.losses import operator_loss
    from ups.training.stage_module import compile_guarded

    torch.manual_seed(0)
    raw = yaml.safe_load((ROOT / "configs" / "model" / f"{args.model}.yaml").read_text())
    raw.pop("kind", None)
    io = ModelIO(spatial_dims=1, in_channels=1, out_channels=1, num_params=1, grid=(args.points,))
    model = Normalized(LatentOperator(LatentOperatorConfig(**raw), io), 1).to(device)
    if compiled:
        compile_guarded(model)
    loss_cfg = LossConfig()

    class Loss(
        torch.nn.Module
    ):  # DDP syncs gradients of what runs through its forward (Lightning does the same)
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, window, params, dt):
            return operator_loss(self.model, window, params, dt, loss_cfg)["loss"]

    net = torch.nn.parallel.DistributedDataParallel(Loss()) if ddp else Loss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    window = torch.randn(args.batch, args.unroll + 1, 1, args.points, device=device)
    params = torch.rand(args.batch, 1, device=device)
    dt = torch.full((args.batch,), 0.05, device=device)
    kind = "cuda" if device.type == "cuda" else "cpu"

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16):
            loss = net(window, params, dt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def _timed(step, device: torch.device, args) -> tuple[float, float]:
    """(steps/s after the warm-up, warm-up seconds)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    return args.steps / (time.perf_counter() - start), warm


def single(args) -> list[dict]:
    device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
    rows = []
    for name, bf16, compiled in (("fp32", False, False), ("bf16", True, False), ("bf16+compile", True, True)):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        rate, warm = _timed(_model_and_step(device, args, bf16=bf16, compiled=compiled), device, args)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        rows.append({"arm": name, "samples_per_s": rate * args.batch, "peak_mib": peak, "warmup_s": warm})
        print(
            f"{name}: {rate * args.batch:.0f} samples/s, peak {peak:.0f} MiB, warm-up {warm:.1f} s",
            flush=True,
        )
    return rows


def ddp_worker(args) -> None:
    """One rank of the DDP arm (started by torchrun); rank 0 prints a JSON row."""
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = args.device == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{int(os.environ['LOCAL_RANK'])}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        torch.set_num_threads(1)
    rate, warm = _timed(_model_and_step(device, args, bf16=False, compiled=False, ddp=True), device, args)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else float("nan")
    rates = [None] * world
    dist.all_gather_object(rates, rate)
    if rank == 0:
        row = {"arm": f"ddp x{world}", "samples_per_s": min(rates) * args.batch * world, "peak_mib": peak}
        print("DDP_ROW " + json.dumps(row), flush=True)
    dist.destroy_process_group()


def ddp(args, gpus: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={gpus}",
        str(Path(__file__).resolve()),
        "--ddp-worker",
        *_passthrough(args),
    ]
    try:
        done = run_group(cmd, timeout=args.arm_timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"arm": f"ddp x{gpus}", "error": f"timed out after {args.arm_timeout} s"}
    for line in done.stdout.splitlines():
        if line.startswith("DDP_ROW "):
            row = json.loads(line[len("DDP_ROW ") :])
            print(f"{row['arm']}: {row['samples_per_s']:.0f} samples/s", flush=True)
            return row
    return {"arm": f"ddp x{gpus}", "error": _tail(done.stderr)}


def run_profile(
    args,
    label: str,
    overrides: list[str],
    *,
    load: bool,
    env_extra: dict | None = None,
    text: str = SMALL_SPEC,
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "gpucheck.yaml"
        spec.write_text(text)
        env = {
            **os.environ,
            "UPS_HOME": str(Path(tmp) / "home"),
            "WANDB_MODE": "offline",
            **(env_extra or {}),
        }
        cmd = [sys.executable, "-m", "ups.cli", "run", str(spec), *overrides, "--json", "--no-progress"]
        started = time.perf_counter()
        try:
            done = run_group(cmd, env=env, timeout=args.arm_timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return {"arm": label, "error": f"timed out after {args.arm_timeout} s"}
        wall = time.perf_counter() - started
        if done.returncode != 0:
            return {"arm": label, "error": f"exit {done.returncode}: {_tail(done.stderr)}", "wall_s": wall}
        report = json.loads(done.stdout.strip().splitlines()[-1])
        m = report["metrics"]
        row = {
            "arm": label,
            "wall_s": wall,
            "test_nrmse": m.get("test/nrmse"),
            "persistence_nrmse": m.get("test/persistence_nrmse"),
        }
        skipped = done.stderr.count("step skipped")
        if skipped:
            row["skipped"] = skipped
        if load:
            from ups.loading import from_checkpoint

            ckpts = sorted(
                (Path(tmp) / "home" / "runs" / report["run_id"] / "checkpoints").glob("epoch*.ckpt")
            )
            model = from_checkpoint(ckpts[-1]).predictor()  # strict: every key of the FSDP checkpoint matches
            row["loaded_params"] = sum(p.numel() for p in model.parameters())
        print(f"{label}: {row}", flush=True)
        return row


def _passthrough(args) -> list[str]:
    return [
        f"--device={args.device}",
        f"--model={args.model}",
        f"--batch={args.batch}",
        f"--points={args.points}",
        f"--unroll={args.unroll}",
        f"--warmup={args.warmup}",
        f"--steps={args.steps}",
    ]


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line and "elastic" not in line]
    lines = errors[:1] or lines
    return " | ".join(lines[-3:])[-400:]


def table(rows: list[dict], base: float | None) -> str:
    out = [
        "| arm | samples/s | vs fp32 | peak MiB | test nRMSE (persistence) | wall s | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = r.get("samples_per_s")
        ratio = f"{rate / base:.2f}x" if rate and base else ""
        peak = r.get("peak_mib")
        quality = (
            f"{r['test_nrmse']:.4f} ({r['persistence_nrmse']:.4f})" if r.get("test_nrmse") is not None else ""
        )
        wall = f"{r['wall_s']:.0f}" if "wall_s" in r else ""
        notes = r.get("error") or "; ".join(
            ([f"loaded {r['loaded_params']} params on one device"] if "loaded_params" in r else [])
            + ([f"{r['skipped']} step(s) skipped, run finished"] if "skipped" in r else [])
        )
        out.append(
            f"| {r['arm']} | {f'{rate:.0f}' if rate else ''} | {ratio} | "
            f"{f'{peak:.0f}' if peak == peak and peak is not None else ''} | {quality} | "
            f"{wall} | {notes} |"
        )
    return "\n".join(out)


def main() -> None:
    print(provenance_line(), flush=True)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--model", default="operator_small")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--points", type=int, default=256)
    parser.add_argument("--unroll", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--arm-timeout", type=int, default=240)
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    if args.ddp_worker:
        ddp_worker(args)
        return
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: run with --device cpu to check the script itself")
    gpus = torch.cuda.device_count() if cuda else 2
    print(
        f"device: {torch.cuda.get_device_name(0) if cuda else 'cpu'} x{gpus}; torch {torch.__version__}",
        flush=True,
    )

    rows = single(args)
    rows.append(ddp(args, gpus))
    if cuda:
        one = ["hardware=1gpu"]
        rows.append(
            run_profile(args, "run 1gpu bf16-mixed", [*one, "hardware.precision=bf16-mixed"], load=True)
        )
        rows.append(  # AMP's grad scaler must skip its step when ours is skipped (closure returns None)
            run_profile(
                args,
                "run 1gpu 16-mixed, OOM at batch 3, skip_batch",
                [*one, "hardware.precision=16-mixed", "hardware.oom=skip_batch"],
                load=False,
                env_extra={"UPS_SIMULATE_OOM": "at=3"},
            )
        )
        rows.append(
            run_profile(
                args, f"run ddp x{gpus}", ["hardware=2gpu_ddp", f"hardware.devices={gpus}"], load=False
            )
        )
        rows.append(run_profile(args, "run 1gpu 2d (ns2d, fno)", one, load=True, text=SMALL_SPEC_2D))
        if gpus >= 2:
            n = min(gpus, 4)
            rows.append(
                run_profile(
                    args, f"run fsdp x{n}", ["hardware=4gpu_fsdp", f"hardware.devices={n}"], load=True
                )
            )
        else:
            rows.append({"arm": "run fsdp", "error": "skipped: FSDP needs 2 GPUs"})
    else:
        rows.append(run_profile(args, "run cpu_ddp2", ["hardware=cpu_ddp2"], load=True))
        rows.append(run_profile(args, "run cpu 2d (ns2d, fno)", [], load=True, text=SMALL_SPEC_2D))
        rows.append({"arm": "run fsdp", "error": "skipped: FSDP needs GPUs"})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    meta = {
        "commit": commit.stdout.strip(),
        "date": time.strftime("%Y-%m-%d"),
        "gpus": gpus,
        "args": vars(args),
    }
    print(json.dumps({"rows": rows, **meta}, default=str))
    base = rows[0].get("samples_per_s")
    print(
        f"\nGPU check: {args.model}, batch {args.batch}/GPU, {args.points} points, unroll {args.unroll}; {meta}"
    )
    print(table(rows, base))


if __name__ == "__main__":
    main()
