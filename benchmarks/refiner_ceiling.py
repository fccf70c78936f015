"""What bounds a refiner's corr_time gain over ONE trained Kuramoto–Sivashinsky operator (issue 9's ≥ 1.15× target).

Every row rolls out the split's trajectories from frame 0 and reports corr_time as DESIGN defines it (the mean
correlation curve over trajectories first below 0.8, in time units), with rollout nRMSE at 50 steps:

- `operator alone`: the checkpoint. Its corr_time is also computed by the platform's `evaluate_split`, and the
  script stops if the two disagree (so every row here is on the platform's scale).
- `low-pass c`: the operator's prediction with wavenumbers ≥ c zeroed at every step: what removing the
  high-wavenumber content the operator emits gains.
- `oracle ≥ c`: wavenumbers ≥ c replaced by the TRUE state's at every step. No refiner that corrects only that
  band can do better than this, so it is an upper bound on a high-band refiner's gain.
- `fine-tuned +N`: the operator trained N more one-step steps with the operator stage's loss (relative L2, AdamW,
  one-cycle cosine, clipping at 1): what a better one-step model gains, with its one-step nRMSE.
- `solver + noise δ`: the exact ETDRK4 solve (`ups.data.ks.solve_ks`) with a random error added after every frame,
  wavenumbers 1–24, of relative RMS δ (the operator's one-step nRMSE, and half of it): how corr_time responds to
  UNSTRUCTURED per-step error of the operator's size.

Then the operator's rollout spectrum: predicted / true energy and the relative error per wavenumber band at steps
1, 20, 50, 100.

    UPS_HOME=/tmp/ks/home .venv/bin/ups-exp run specs/ks.yaml train.max_epochs=6 ...   # an operator, see docs
    .venv/bin/python benchmarks/refiner_ceiling.py --checkpoint RUN/checkpoints/last.ckpt --home /tmp/ks/home

About 5 minutes on 2 cores (1600 fine-tuning steps of `operator_small` take about 90 s).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from _ups import provenance, provenance_line
from refiner_variants import _pairs

BANDS = ((1, 4), (4, 12), (12, 24), (24, 48), (48, None))
SPECTRUM_STEPS = (1, 20, 50, 100)


def _with_band(u: torch.Tensor, source: torch.Tensor | None, cut: int) -> torch.Tensor:
    """u (B, C, X) with its wavenumbers ≥ cut taken from `source` (zeroed when None)."""
    fu = torch.fft.rfft(u, dim=-1)
    fu[..., cut:] = 0 if source is None else torch.fft.rfft(source, dim=-1)[..., cut:]
    return torch.fft.irfft(fu, n=u.shape[-1], dim=-1)


def _scores(preds, states, dt: float) -> dict[str, float]:
    """Scores of a rollout given step by step: preds yields the prediction of steps 1, 2, ... (B, C, X) each."""
    from ups.training.metrics import band_nrmse, nrmse, pearson, steps_above

    corr, err, high = [], [], []
    for h, u in enumerate(preds, start=1):
        corr.append(pearson(u, states[:, h]))  # (B,)
        err.append(nrmse(u, states[:, h]))
        high.append(band_nrmse(u, states[:, h])["high"])
    curve = torch.stack(corr, dim=1).mean(dim=0)  # (H,): DESIGN's corr_time reads the mean curve
    return {
        "corr_time": steps_above(curve).item() * dt,
        "rollout_nrmse@50": torch.stack(err, dim=1)[:, 49].mean().item(),
        "nrmse_band_high": torch.stack(high, dim=1).mean().item(),  # over the horizon, as the platform's
    }


@torch.no_grad()
def rollout_scores(step, states, params, dt, *, fix=None) -> dict[str, float]:
    """Roll `step` out from frame 0 over the whole window; `fix(u, h)` edits the prediction of step h."""

    def preds():
        u = states[:, 0]
        for h in range(1, states.shape[1]):
            u = step(u, params, dt)
            u = u if fix is None else fix(u, h)
            yield u

    return _scores(preds(), states, float(dt[0]))


def fine_tune(op, train, steps: int, lr: float, seed: int):
    from ups.training.losses import relative_l2

    op = copy.deepcopy(op).requires_grad_(True).train()
    opt = torch.optim.AdamW(op.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        u_t, u_next, params, dt = _pairs(train, g, 32)
        loss = relative_l2(op(u_t, params, dt), u_next)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(op.parameters(), 1.0)
        opt.step()
        sched.step()
    return op.requires_grad_(False).eval()


@torch.no_grad()
def one_step_nrmse(step, states, params, dt) -> float:
    from ups.training.metrics import nrmse

    b, t = states.shape[:2]
    inputs = states[:, :-1].reshape(-1, *states.shape[2:])
    pred = torch.cat(
        [
            step(
                inputs[i : i + 2048],
                params.repeat_interleave(t - 1, 0)[i : i + 2048],
                dt.repeat_interleave(t - 1)[i : i + 2048],
            )
            for i in range(0, inputs.shape[0], 2048)
        ]
    )
    return nrmse(pred, states[:, 1:].reshape_as(pred)).mean().item()


def solver_with_noise(states, lengths, dt: float, delta: float, seed: int) -> dict[str, float]:
    """The exact solve from frame 0 with relative error δ (wavenumbers 1–24) added after every frame."""
    from ups.data.ks import solve_ks

    truth = states[:, :, 0].double().numpy()  # (B, T, X)
    rms = float(np.sqrt((truth**2).mean()))
    rng = np.random.default_rng(seed)

    def preds():
        u = truth[:, 0]
        for _ in range(1, truth.shape[1]):
            u = solve_ks(u, lengths=lengths, dt_save=dt, num_frames=2)[:, 1]
            spec = np.fft.rfft(rng.standard_normal(u.shape), axis=-1)
            spec[..., 0], spec[..., 25:] = 0, 0
            noise = np.fft.irfft(spec, n=u.shape[-1], axis=-1)
            u = u + noise / np.sqrt((noise**2).mean(axis=-1, keepdims=True)) * delta * rms
            yield torch.from_numpy(u)[:, None]  # (B, C=1, X)

    return _scores(preds(), states.double(), dt)


@torch.no_grad()
def spectrum_rows(op, states, params, dt) -> list[str]:
    from ups.training.metrics import spectral_norm_sq

    rows, u = [], states[:, 0]
    for h in range(1, max(SPECTRUM_STEPS) + 1):
        u = op(u, params, dt)
        if h not in SPECTRUM_STEPS:
            continue
        pred, true = spectral_norm_sq(u).mean(dim=(0, 1)), spectral_norm_sq(states[:, h]).mean(dim=(0, 1))
        error = spectral_norm_sq(u - states[:, h]).mean(dim=(0, 1))
        cells = [
            f"{(pred[lo:hi].sum() / true[lo:hi].sum()).item():.3g} / {(error[lo:hi].sum() / true[lo:hi].sum()).sqrt().item():.3g}"
            for lo, hi in BANDS
        ]
        rows.append(f"| {h} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    print(provenance_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a KS operator run's checkpoint")
    parser.add_argument(
        "--home", type=Path, required=True, help="the $UPS_HOME holding that run's data cache"
    )
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--cuts", type=int, nargs="+", default=[48, 32, 24])
    parser.add_argument("--fine-tune-steps", type=int, default=1600, help="0: no fine-tuned row")
    parser.add_argument(
        "--solver", action=argparse.BooleanOptionalAction, default=True, help="the solver + noise rows"
    )
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from ups.data.datamodule import PDEDataModule
    from ups.data.source import load_sources
    from ups.data.splits import assign_splits
    from ups.loading import from_checkpoint
    from ups.training.evaluate import evaluate_split

    loaded = from_checkpoint(args.checkpoint)
    op = loaded.predictor().requires_grad_(False).eval()
    spec = loaded.spec
    sources = load_sources(spec.data, args.home)
    dm = PDEDataModule(spec, sources, layout=loaded.layout)
    states, params, dt = dm.states[args.split], dm.params[args.split], dm.dts[args.split]
    rows = []

    def add(name: str, scores: dict, **extra) -> None:
        rows.append({"row": name, **scores, **extra})
        print(json.dumps(rows[-1]), flush=True)

    base = rollout_scores(op, states, params, dt)
    platform = evaluate_split(op, dm, spec, args.split)[0]
    for key in ("corr_time", "rollout_nrmse@50", "nrmse_band_high"):
        theirs = platform[f"{args.split}/{key}"]
        if abs(theirs - base[key]) > 1e-6 * max(1.0, abs(base[key])):
            raise SystemExit(f"this script's {key} {base[key]} differs from the platform's {theirs}")
    op_one_step = one_step_nrmse(op, states, params, dt)
    add("operator alone", base, one_step_nrmse=op_one_step)
    for cut in args.cuts:
        add(
            f"low-pass {cut}",
            rollout_scores(op, states, params, dt, fix=lambda u, h, c=cut: _with_band(u, None, c)),
        )
    for cut in args.cuts:
        fix = lambda u, h, c=cut: _with_band(u, states[:, h], c)  # noqa: E731
        add(f"oracle ≥ {cut}", rollout_scores(op, states, params, dt, fix=fix))
    if args.fine_tune_steps > 0:
        start = time.perf_counter()
        tuned = fine_tune(op, dm.train[0], args.fine_tune_steps, args.lr, args.seed)
        seconds = round(time.perf_counter() - start, 1)
        add(
            f"fine-tuned +{args.fine_tune_steps}",
            rollout_scores(tuned, states, params, dt),
            one_step_nrmse=one_step_nrmse(tuned, states, params, dt),
            train_seconds=seconds,
        )
    if args.solver:
        cfg = spec.data.sources()[0]
        split_rows = assign_splits(
            sources[0].states.shape[0],
            split_seed=cfg.split_seed,
            val_fraction=cfg.val_fraction,
            test_fraction=cfg.test_fraction,
        )[args.split]
        lengths = sources[0].trajectory_params["L"][split_rows]
        for delta in (op_one_step, op_one_step / 2):
            add(
                f"solver + noise {delta:.2e}",
                solver_with_noise(states, lengths, float(dt[0]), delta, args.seed),
            )

    ref, high = rows[0]["corr_time"], rows[0]["nrmse_band_high"]
    print(f"\n{args.split} split, {states.shape[0]} trajectories × {states.shape[1] - 1} steps")
    print("| row | corr_time | × operator | rollout nRMSE@50 | high band | × operator | one-step nRMSE |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        one = f"{r['one_step_nrmse']:.5f}" if "one_step_nrmse" in r else ""
        print(
            f"| {r['row']} | {r['corr_time']:.1f} | {r['corr_time'] / ref:.2f} | {r['rollout_nrmse@50']:.4f} "
            f"| {r['nrmse_band_high']:.3f} | {r['nrmse_band_high'] / high:.2f} | {one} |"
        )
    print("\nThe operator's rollout: predicted / true energy, and relative error, per wavenumber band")
    print("| step | " + " | ".join(f"k {lo}–{hi - 1 if hi else 'end'}" for lo, hi in BANDS) + " |")
    print("|---|" + "---|" * len(BANDS))
    print("\n".join(spectrum_rows(op, states, params, dt)))
    print(json.dumps({"rows": rows, **provenance()}))


if __name__ == "__main__":
    main()
