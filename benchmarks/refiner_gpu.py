"""PDE-Refiner as published against the equal-steps MSE operator (arm (a)) on the paper's Kuramoto–Sivashinsky
setup, on one GPU in one call (the prepared script for a lent GPU machine: benchmarks/refiner_gpu.sh).

- Data, made on the device: `ups.data.ks`'s scheme (ETDRK4, 2/3 dealiasing, float64, steps ≤ 0.05) batched on
  the GPU; L ~ U[0.9, 1.1]·64 per trajectory, 256 points, frames every Δt = 0.2 after a burn-in of 100; 2048
  training trajectories of 140 frames, 128 test trajectories of 640 frames (the paper's sizes as we read them).
- Model: the catalogue's `unet` (width 64, multipliers 1, 2, 2, 4, two blocks per level) for both arms, the
  conditioning being L/64 − 1 (and k/K for the refiner).
- Arms, the bare loop (no Lightning, no tracking), AdamW with a cosine schedule, batch 128, fp32, EMA 0.995 of the
  weights evaluated: (op) the MSE operator, one-step MSE in normalized units; (pr) `pde_refiner`'s loss
  (`ups.training.pde_refiner_module.pde_refiner_loss`): k ~ U{0..K}, K = 3, σ_min = 6.3e-4 (std). The operator
  trains for half of `--budget` seconds; the refiner then trains exactly as many steps (equal steps).
- Evaluation: every test trajectory rolled out from frame 0 with a fixed noise seed; corr_time from the mean
  Pearson curve (first below 0.8, in time units, censored at the horizon); the ratio's paired bootstrap 95% interval
  over trajectories; rollout nRMSE at 10 and 50 steps; the high band (|k| ≥ 12) one-step error.

    bash benchmarks/refiner_gpu.sh                                 # on the GPU machine: about 9 minutes
    .venv/bin/python benchmarks/refiner_gpu.py --device cpu --dry-run   # the same code at toy sizes, in seconds
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time

import numpy as np
import torch
from _ups import provenance, provenance_line

PAPER = {"train": 2048, "test": 128, "points": 256, "train_frames": 140, "test_frames": 640, "batch": 128,
         "width": 64, "multipliers": [1, 2, 2, 4], "blocks": 2, "budget": 480.0}  # fmt: skip
DRY = {"train": 16, "test": 6, "points": 64, "train_frames": 12, "test_frames": 20, "batch": 8,
       "width": 8, "multipliers": [1, 2], "blocks": 1, "budget": 1.0}  # fmt: skip
DT, BURN_IN, STEP, THRESHOLD = 0.2, 100.0, 0.05, 0.8


def ks_on_device(n: int, frames: int, points: int, *, seed: int, device, burn_in: float = BURN_IN):
    """(states (n, frames, 1, points) float32, L (n,)) on `device`: ups.data.ks's initial conditions and scheme."""
    from ups.data.ks import _SpectralKS, ks_initial_conditions
    from ups.data.spectral import etdrk4_step

    x = (np.arange(points) + 0.5) / points
    u0, lengths = ks_initial_conditions(x, indices=range(n), seed=seed, length_low=57.6, length_high=70.4)
    per_frame = max(1, math.ceil(DT / STEP - 1e-9))
    solver = _SpectralKS(points, lengths, DT / per_frame)
    coefficients = tuple(c.to(device) for c in solver.coefficients)
    v = torch.fft.rfft(torch.from_numpy(u0).to(device), norm="forward")
    for _ in range(round(burn_in / DT) * per_frame):
        v = etdrk4_step(v, coefficients, solver.squared)
    out = torch.empty(n, frames, 1, points, device=device)
    for frame in range(frames):
        if frame:
            for _ in range(per_frame):
                v = etdrk4_step(v, coefficients, solver.squared)
        out[:, frame, 0] = torch.fft.irfft(v, n=points, norm="forward").float()
    if not torch.isfinite(out).all():
        raise FloatingPointError("the Kuramoto–Sivashinsky solve diverged")
    return out, torch.from_numpy(lengths).float().to(device)


def build(kind: str, sizes: dict, points: int, device):
    """The arm's predictor around the catalogue's `unet`: a Normalized operator or a PDERefiner."""
    from ups import catalog
    from ups.models.refiner import PDERefiner
    from ups.models.wrap import Normalized
    from ups.plugin import ModelIO

    row = catalog.get("models", "unet")
    cfg = {k: v for k, v in vars(catalog.load(row.config)()).items() if k != "kind"}
    cfg.update(width=sizes["width"], multipliers=sizes["multipliers"], blocks_per_level=sizes["blocks"])
    refiner = kind == "pr"
    io = ModelIO(spatial_dims=1, in_channels=2 if refiner else 1, out_channels=1, num_params=2 if refiner else 1,
                 grid=(points,), periodic=(True,))  # fmt: skip
    net = catalog.load(row.build)(cfg, io)
    model = PDERefiner(net, 1, num_steps=3, sigma_min=6.3e-4) if refiner else Normalized(net, 1)
    return model.to(device)


def train(kind: str, model, states, params, *, steps: int | None, seconds: float, batch: int, seed: int):
    """AdamW + cosine over `steps` (or as many as fit in `seconds`, at least 20: steps/s measured over 10 warm-up steps)."""
    from ups.training.pde_refiner_module import pde_refiner_loss
    from ups.training.stage_module import ema_update

    torch.manual_seed(seed)
    n, frames = states.shape[:2]
    flat = states.flatten(0, 1)
    mean, std = flat.mean(dim=(0, 2)), flat.std(dim=(0, 2))  # per channel
    model.set_normalization(mean, std)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-5)
    dt = torch.full((batch,), DT, device=states.device)

    def one_step() -> torch.Tensor:
        i = torch.randint(n, (batch,), device=states.device)
        t = torch.randint(frames - 1, (batch,), device=states.device)
        z_t, z_next = model.normalize(states[i, t]), model.normalize(states[i, t + 1])
        p = params[i]
        if kind == "pr":
            loss = pde_refiner_loss(model, z_t, z_next, p, dt)[0].mean()
        else:
            loss = (model.normalize(model(states[i, t], p, dt)) - z_next).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_update(ema, model, 0.995)
        return loss.detach()  # no per-step host sync

    sync = torch.cuda.synchronize if states.is_cuda else (lambda: None)
    start = time.perf_counter()
    if steps is None:  # measure the rate, then fix the step budget (the schedule needs it)
        for _ in range(10):
            one_step()
        sync()
        rate = 10 / (time.perf_counter() - start)
        steps = max(20, int(rate * seconds))
        done = 10
    else:
        done = 0
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, (s + done) / steps)))
    )
    last = torch.tensor(float("nan"))
    for _ in range(steps - done):
        last = one_step()
        sched.step()
    sync()
    return ema.eval(), steps, time.perf_counter() - start, float(last)


@torch.no_grad()
def rollout_scores(model, states, params, *, seed: int, chunk: int = 32):
    """Per trajectory: the correlation curve (N, H) and nRMSE (N, H) of a rollout from frame 0."""
    from ups.training.metrics import nrmse, pearson

    corr, err = [], []
    with torch.random.fork_rng(devices=[states.device] if states.is_cuda else []):
        torch.manual_seed(seed)
        for a in range(0, states.shape[0], chunk):
            s, p = states[a : a + chunk], params[a : a + chunk]
            u, c, e = s[:, 0], [], []
            dt = torch.full((s.shape[0],), DT, device=s.device)
            for h in range(1, s.shape[1]):
                u = model(u, p, dt)
                c.append(pearson(u, s[:, h]))
                e.append(nrmse(u, s[:, h]))
            corr.append(torch.stack(c, 1).cpu())
            err.append(torch.stack(e, 1).cpu())
    return torch.cat(corr).double(), torch.cat(err).double()


def corr_time(curve: torch.Tensor) -> float:
    """Time until the mean correlation curve first drops below 0.8 (the horizon when it never does)."""
    below = (curve < THRESHOLD).nonzero()
    return float(below[0, 0] if len(below) else curve.shape[0]) * DT


def paired_ratio(
    a: torch.Tensor, b: torch.Tensor, *, draws: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """corr_time(a) / corr_time(b) and its paired bootstrap 95% interval over trajectories (rows)."""
    g = torch.Generator().manual_seed(seed)
    point = corr_time(a.mean(0)) / max(corr_time(b.mean(0)), DT)
    ratios = []
    for _ in range(draws):
        idx = torch.randint(a.shape[0], (a.shape[0],), generator=g)
        ratios.append(corr_time(a[idx].mean(0)) / max(corr_time(b[idx].mean(0)), DT))
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return point, float(lo), float(hi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="toy sizes (for a CPU check of the script)")
    parser.add_argument("--budget", type=float, help="training seconds, both arms together (paper: 480)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    sizes = dict(DRY if args.dry_run else PAPER)
    if args.budget:
        sizes["budget"] = args.budget
    device = torch.device(args.device)
    t0 = time.perf_counter()
    train_states, train_l = ks_on_device(sizes["train"], sizes["train_frames"], sizes["points"], seed=args.seed,
                                         device=device, burn_in=10.0 if args.dry_run else BURN_IN)  # fmt: skip
    test_states, test_l = ks_on_device(sizes["test"], sizes["test_frames"], sizes["points"], seed=10_000 + args.seed,
                                       device=device, burn_in=10.0 if args.dry_run else BURN_IN)  # fmt: skip
    data_s = time.perf_counter() - t0
    train_p, test_p = (train_l / 64 - 1)[:, None], (test_l / 64 - 1)[:, None]
    results, curves = {}, {}
    steps = None
    for kind in ("op", "pr"):
        torch.manual_seed(args.seed)
        model = build(kind, sizes, sizes["points"], device)
        ema, steps, seconds, last = train(kind, model, train_states, train_p, steps=steps,
                                          seconds=sizes["budget"] / 2, batch=sizes["batch"], seed=args.seed)  # fmt: skip
        corr, err = rollout_scores(ema, test_states, test_p, seed=1234)
        curves[kind] = corr
        results[kind] = {
            "steps": steps, "train_s": seconds, "last_loss": last,
            "params": sum(p.numel() for p in model.parameters()),
            "corr_time": corr_time(corr.mean(0)), "censored": corr_time(corr.mean(0)) >= corr.shape[1] * DT,
            "rollout_nrmse@10": float(err[:, min(9, err.shape[1] - 1)].mean()),
            "rollout_nrmse@50": float(err[:, min(49, err.shape[1] - 1)].mean()),
        }  # fmt: skip
    ratio = paired_ratio(curves["pr"], curves["op"])
    print(provenance_line())
    print(f"device {device}, data {data_s:.1f} s, sizes {json.dumps(sizes)}")
    print(
        f"{'arm':<14} {'steps':>7} {'train s':>8} {'params':>10} {'corr_time':>10} {'nRMSE@10':>9} {'nRMSE@50':>9}"
    )
    for kind, name in (("op", "MSE operator"), ("pr", "pde_refiner")):
        r = results[kind]
        flag = " (censored)" if r["censored"] else ""
        print(f"{name:<14} {r['steps']:>7} {r['train_s']:>8.1f} {r['params']:>10,} {r['corr_time']:>10.1f} "
              f"{r['rollout_nrmse@10']:>9.4f} {r['rollout_nrmse@50']:>9.4f}{flag}")  # fmt: skip
    print(
        f"pde_refiner / MSE operator corr_time: {ratio[0]:.3f} (paired bootstrap 95%: {ratio[1]:.3f}–{ratio[2]:.3f})"
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"provenance": provenance(), "sizes": sizes, "device": str(device), "data_s": data_s,
                       "arms": results, "ratio": ratio}, f, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
