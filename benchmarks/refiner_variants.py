"""Refiner variants on ONE frozen Kuramoto–Sivashinsky operator, scored on its validation split: which
parametrization, noise floor, size and budget make PDE-Refiner's refinement gain within a CPU budget.

Each variant trains a `ups.models.refiner.Refiner` the way the `diffusion_residual` stage does (pairs (u_t, u_{t+1})
from the training split, k ~ U{1..K}, z̃ = z_{t+1} + σ_k ε with σ_k = σ_min^(k/K), loss ‖R − ε‖², an EMA of the
weights with decay 0.995), in a plain loop (AdamW, one-cycle cosine schedule, gradient clipping at 1), and is then
scored with `ups.training.evaluate.evaluate_split` on the operator's own validation split (same seeded noise as a
run). It prints the operator alone first, then each variant: val corr_time, one-step nRMSE, high-band nRMSE,
rollout nRMSE at 50 steps, and the training loss per noise level on fresh training pairs (a level at ≈ 1.0 has
learned nothing).

A variant is `INPUT:MODEL:STEPS:LR:SIGMA_MIN`, e.g. `residual:operator_mid:1600:1e-3:1e-2` (INPUT is the stage's
`refiner_input`, `residual` or `state`; MODEL a block in configs/model/, or `warm`: the operator's own
architecture initialized from its weights, see `warm_start`).

    UPS_HOME=/tmp/ksrun/home .venv/bin/ups-exp run specs/ks.yaml tracking=none    # an operator to refine
    .venv/bin/python benchmarks/refiner_variants.py --checkpoint RUN/checkpoints/best.ckpt --home /tmp/ksrun/home \\
        state:operator_small:800:3e-4:4e-7 residual:operator_mid:1600:1e-3:1e-2

About 2–5 minutes per variant on one core (training, then ≈ 100 s of evaluation for `operator_mid`).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import yaml
from _ups import provenance, provenance_line

ROOT = Path(__file__).resolve().parent.parent
K, EMA, BATCH = 3, 0.995, 32
KEYS = ("val/corr_time", "val/nrmse", "val/nrmse_band_high", "val/rollout_nrmse@50")


def _model_config(name: str):
    from ups.models.config import LatentOperatorConfig

    cfg = yaml.safe_load((ROOT / "configs" / "model" / f"{name}.yaml").read_text())
    cfg.pop("kind", None)
    return LatentOperatorConfig(**cfg)


def _pairs(train, g: torch.Generator, n: int):
    """n random (u_t, u_{t+1}) pairs of the training split, their PDE parameters and Δt."""
    states, params, dt = train
    i = torch.randint(states.shape[0], (n,), generator=g)
    t = torch.randint(states.shape[1] - 1, (n,), generator=g)
    return states[i, t], states[i, t + 1], params[i], torch.full((n,), float(dt))


def _loss(refiner, op, u_t, u_next, params, dt, k, sigma_min):
    """(per-sample ‖R − ε‖², k) for noise levels k (B,)."""
    z_t, z_next = op.normalize(u_t), op.normalize(u_next)
    with torch.no_grad():
        z_op = op.normalize(op(u_t, params, dt))
    sigma = (sigma_min ** (k.double() / K)).float()
    eps = torch.randn_like(z_next)
    pred = refiner(z_t, z_next + sigma.view(-1, 1, 1) * eps, z_op, k.float() / K, sigma, params, dt)
    return (pred - eps).square().mean(dim=(1, 2))


def warm_start(refiner, op) -> None:
    """Copy the operator's trunk into a refiner of the same shape: the refiner's extra inputs (the noised input's
    channel, the noise level) start with zero weight and its last layer stays zero, so it starts as the operator
    (F = 0) but with the operator's features of u_t."""
    ref, src = refiner.net.state_dict(), op.net.state_dict()
    with torch.no_grad():
        for key, value in ref.items():
            if key not in src or key.startswith("head.3."):
                continue
            if (
                key == "encoder.0.weight"
            ):  # (D, inputs, p): refiner [z_t, x, sin, cos], operator [z, sin, cos]
                value.zero_()
                value[:, 0] = src[key][:, 0]
                value[:, 2:] = src[key][:, 1:]
            elif (
                key == "cond.0.weight"
            ):  # (cond_dim, P + 2): refiner [params, level, dt], operator [params, dt]
                value.zero_()
                value[:, :-2] = src[key][:, :-1]
                value[:, -1] = src[key][:, -1]
            else:
                value.copy_(src[key])
    refiner.net.load_state_dict(ref)


def train_variant(
    op, train, *, refiner_input: str, model: str, steps: int, lr: float, sigma_min: float, seed: int
):
    from ups.models.refiner import Refiner
    from ups.training.stage_module import ema_update

    torch.manual_seed(seed)
    warm = model == "warm"  # the operator's own architecture, initialized from its weights
    from ups.models.operator import LatentOperator
    from ups.plugin import ModelIO

    io = ModelIO(
        spatial_dims=1,
        in_channels=2,
        out_channels=1,
        num_params=train[1].shape[1] + 1,
        grid=(train[0].shape[-1],),
    )
    refiner = Refiner(
        LatentOperator(op.net.cfg if warm else _model_config(model), io), refiner_input=refiner_input
    )
    if warm:
        warm_start(refiner, op)
    ema = copy.deepcopy(refiner).requires_grad_(False)
    opt = torch.optim.AdamW(refiner.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        u_t, u_next, params, dt = _pairs(train, g, BATCH)
        k = torch.randint(1, K + 1, (BATCH,))  # levels and noise from the global generator, seeded above
        loss = _loss(refiner, op, u_t, u_next, params, dt, k, sigma_min).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(refiner.parameters(), 1.0)
        opt.step()
        sched.step()
        ema_update(ema, refiner, EMA)
    seconds = time.perf_counter() - start
    with torch.no_grad():  # the averaged refiner's loss per level on fresh training pairs
        u_t, u_next, params, dt = _pairs(train, torch.Generator().manual_seed(999), 512)
        per_level = [
            _loss(ema, op, u_t, u_next, params, dt, torch.full((512,), k), sigma_min).mean().item()
            for k in range(1, K + 1)
        ]
    return ema, seconds, per_level


def main() -> None:
    print(provenance_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a KS operator run's checkpoint")
    parser.add_argument(
        "--home", type=Path, required=True, help="the $UPS_HOME holding that run's data cache"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("variants", nargs="+", help="INPUT:MODEL:STEPS:LR:SIGMA_MIN")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from ups.data.datamodule import PDEDataModule
    from ups.data.source import load_sources
    from ups.loading import from_checkpoint
    from ups.models.refiner import RefinedOperator
    from ups.training.evaluate import evaluate_split

    loaded = from_checkpoint(args.checkpoint)
    op = loaded.predictor().requires_grad_(False)
    spec = loaded.spec
    dm = PDEDataModule(spec, load_sources(spec.data, args.home), layout=loaded.layout)
    rows = []

    def score(name: str, model, **extra) -> None:
        metrics, _ = evaluate_split(model, dm, spec, "val")
        rows.append({"variant": name, **{k: metrics[k] for k in KEYS}, **extra})
        print(json.dumps(rows[-1]), flush=True)

    score("operator alone", op)
    for variant in args.variants:
        refiner_input, model, steps, lr, sigma_min = variant.split(":")
        ema, seconds, per_level = train_variant(
            op,
            dm.train[0],
            refiner_input=refiner_input,
            model=model,
            steps=int(steps),
            lr=float(lr),
            sigma_min=float(sigma_min),
            seed=args.seed,
        )
        refined = RefinedOperator(op, ema, num_steps=K, sigma_min=float(sigma_min))
        score(
            variant, refined, train_seconds=round(seconds, 1), loss_per_level=[round(v, 4) for v in per_level]
        )

    base = rows[0]["val/corr_time"]
    print(
        "\n| variant | corr_time | × operator | one-step nRMSE | high band | rollout@50 | loss per level k=1..K |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        levels = " / ".join(f"{v:.3g}" for v in r.get("loss_per_level", [])) or "—"
        print(
            f"| {r['variant']} | {r['val/corr_time']:.1f} | {r['val/corr_time'] / base:.2f} | {r['val/nrmse']:.5f} "
            f"| {r['val/nrmse_band_high']:.3f} | {r['val/rollout_nrmse@50']:.4f} | {levels} |"
        )
    print(json.dumps({"rows": rows, **provenance()}))


if __name__ == "__main__":
    main()
