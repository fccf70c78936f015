"""The flagship's quality next to three baselines, in one run: persistence, an FNO, and a coarse numerical solve.

The flagship (`specs/burgers.yaml`: PDEBench 1D Burgers, ν = 0.01, generated data) is trained by
`ups-exp run specs/burgers.yaml tracking=none seed=S --json` in a fresh `$UPS_HOME`. Then, in this process, on the
run's own data and split (rebuilt from its checkpoint's resolved spec and the workspace's cached data):

- **FNO**: `neuralop.models.FNO` (1D, 4 layers, 64 channels, `n_modes=(32,)`: neuraloperator keeps
  32 // 2 + 1 = 17 Fourier modes, wavenumbers 0–16, next to the operator's 16), trained on the training split's
  windows only, with the operator's recipe: inputs normalised by the train mean/std, the PDE parameters and Δt as
  constant channels, a residual update, the same loss (one-step + 5-step unroll + spectral, with the spec's `train.unroll_grad_steps`), optimizer, gradient
  clipping and batch order, the cosine schedule run over time instead of steps. Budget: the operator's training
  seconds (the fit's wall time from Lightning's Timer state in `last.ckpt`, less its in-fit validations), at the
  same number of threads; no step starts past it (so the last may end up to one step later); `--fno-seconds`
  overrides it.
- **coarse solver**: the family's own solver on a grid 4× coarser (`ups.data.coarse_solver.coarse_rollout`, the
  run's `solver_rollout_*` baseline), from the same given frame; its one-step error restarts it from every true
  frame of the window.
- **persistence**: predict no change.

Every arm is scored by the project's metric code (`ups.training.evaluate.evaluate_split`, or the same formulas
on the solver's frames): test one-step and rollout nRMSE and corr_time (`≥` when the correlation never drops below
0.8 within the horizon). ms / rollout is the wall time of rolling out the whole test split over the horizon
divided by its trajectories, all measured here at the same thread count (neural arms in batches of
`eval.batch_size`, the solver vectorised over the split). The last line is JSON with `ups_over_fno` (our rollout
nRMSE over the FNO's; target ≤ 0.5), `ups_over_solver`, `ups_over_persistence` and every arm's numbers.

    .venv/bin/python benchmarks/quality.py             # ≈ 15 min on 2 idle cores: two ≈ 7-minute trainings
    .venv/bin/python benchmarks/quality.py --quick     # smoke: 10 steps on 64 trajectories, ≈ 1 min
    .venv/bin/python benchmarks/quality.py --seed 1 --fno-seconds 600 --keep /tmp/q1 --json /tmp/q1.json

Run it on an otherwise idle machine: the FNO's budget is seconds, so a load that slows one arm's training and not
the other's biases the comparison (the load average is printed before, between and after the arms).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _ups import provenance_line, run_ups
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "burgers.yaml"
QUICK = ["data.num_trajectories=64", "train.max_epochs=1", "train.batches_per_epoch=10"]
FNO_MODES, FNO_WIDTH, FNO_LAYERS = 32, 64, 4
TARGET = 0.5
"""Acceptance: our rollout nRMSE at most this times the FNO's."""

# Legend: B batch, K unrolled steps, H horizon, C fields, P PDE parameters, X grid points.


class FNOStep(nn.Module):
    """neuraloperator's FNO as a one-step predictor with the `model(u, params, dt)` call of ours: normalised state
    plus the PDE parameters and Δt as constant channels in, the normalised change of the state out."""

    def __init__(self, *, num_fields: int, num_params: int, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        from neuralop.models import FNO

        self.net = FNO(
            n_modes=(FNO_MODES,),
            in_channels=num_fields + num_params + 1,  # the grid coordinate is appended by the FNO itself
            out_channels=num_fields,
            hidden_channels=FNO_WIDTH,
            n_layers=FNO_LAYERS,
        )
        self.register_buffer("field_mean", mean.view(1, -1, 1).clone())  # (1, C, 1)
        self.register_buffer("field_std", std.clamp_min(1e-8).view(1, -1, 1).clone())

    def forward(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        x = u.shape[-1]
        cond = torch.cat([params, dt.view(-1, 1)], dim=1).unsqueeze(-1).expand(-1, -1, x)  # (B, P+1, X)
        z = torch.cat([(u - self.field_mean) / self.field_std, cond], dim=1)  # (B, C+P+1, X)
        return u + self.field_std * self.net(z)  # (B, C, X)


def run_operator(seed: int, extra: list[str], home: Path) -> tuple[dict, float]:
    """`ups-exp run` of the flagship in `home`: its JSON summary and the command's wall seconds."""
    return run_ups(SPEC, ["tracking=none", f"seed={seed}", *extra, "--no-progress"], home)


def training_seconds(checkpoint: Path, spec) -> tuple[float, float] | None:
    """(fit wall, fit wall less its in-fit validations) from Lightning's Timer state in the run's last.ckpt; None
    without a Timer (it exists when `train.max_time_minutes` is set, as in the flagship)."""
    state = torch.load(checkpoint.parent / "last.ckpt", map_location="cpu", weights_only=True)
    timer = next((v for k, v in state.get("callbacks", {}).items() if k.startswith("Timer")), None)
    if timer is None:
        return None
    elapsed = timer["time_elapsed"]  # last.ckpt is written after the last validation, whose time this holds
    validations = (state["epoch"] + 1) // spec.train.val_every_n_epochs
    return elapsed["train"], elapsed["train"] - validations * elapsed["validate"]


def lr_factor(step: int, progress: float, train) -> float:
    """The spec's warm-up (in steps), then its cosine over the time budget (`progress` in [0, 1])."""
    warm = min(1.0, (step + 1) / train.warmup_steps) if train.warmup_steps else 1.0
    if train.scheduler != "cosine":
        return warm
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warm * (train.min_lr_ratio + (1 - train.min_lr_ratio) * cosine)


def train_fno(dm, spec, *, seconds: float, seed: int) -> tuple[FNOStep, dict]:
    """An FNO trained for `seconds` of wall time on the training windows, with the operator's loss and settings."""
    from ups.training.losses import operator_loss
    from ups.training.optim import build_optimizer

    torch.manual_seed(seed)
    model = FNOStep(
        num_fields=dm.states["train"].shape[2], num_params=len(dm.layout), mean=dm.mean, std=dm.std
    )
    optimizer = build_optimizer(model, spec.train)
    base = [g["lr"] for g in optimizer.param_groups]
    loader = dm.train_dataloader()  # the operator's windows (K + 1 frames) in the operator's order
    model.train()
    steps, epoch, losses = 0, 0, []
    started, cpu = time.perf_counter(), time.process_time()
    sampler = (
        loader.batch_sampler.sampler
    )  # ups' loaders batch with a batch sampler; the order lives under it
    while time.perf_counter() - started < seconds:
        sampler.set_epoch(epoch)
        for window, params, dt, _task in loader:  # (B, K+1, C, X), (B, P), (B,)
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                break
            for group, lr in zip(optimizer.param_groups, base):
                group["lr"] = lr * lr_factor(steps, elapsed / seconds, spec.train)
            loss = operator_loss(model, window, params, dt, spec.stage.loss, spec.train.unroll_grad_steps)[
                "loss"
            ]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the FNO's loss is {loss.item()} at step {steps}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if spec.train.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), spec.train.grad_clip)
            optimizer.step()
            steps += 1
            losses.append(loss.item())
        epoch += 1
    tail = losses[-20:] or [float("nan")]
    return model.eval(), {
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "final_loss": sum(tail) / len(tail),
    }


@torch.no_grad()
def rollout_ms(model: nn.Module, dm, spec) -> float:
    """Wall ms per test trajectory of a rollout over the horizon, in batches of `eval.batch_size`."""
    from ups.models.operator import rollout

    c, h, size = spec.eval.context_frames, spec.eval.horizon, spec.eval.batch_size
    states, params, dts = dm.states["test"], dm.params["test"], dm.dts["test"]
    model(states[:size, c - 1], params[:size], dts[:size])  # warm-up
    started = time.perf_counter()
    for i in range(0, states.shape[0], size):
        rollout(model, states[i : i + size, c - 1], params[i : i + size], dts[i : i + size], h)
    return 1000 * (time.perf_counter() - started) / states.shape[0]


def neural_arm(model: nn.Module, dm, spec) -> tuple[dict, dict]:
    """(the model's arm, persistence's arm) on the test split."""
    from ups.training.evaluate import evaluate_split

    m, _ = evaluate_split(model, dm, spec, "test")
    arm = {
        "nrmse": m["test/nrmse"],
        "rollout_nrmse": m["test/rollout_nrmse"],
        "corr_time": m["test/corr_time"],
        "corr_time_censored": bool(m["test/corr_time_censored"]),
        "ms_per_rollout": rollout_ms(model, dm, spec),
        "params": sum(p.numel() for p in model.parameters()),
    }
    horizon_time = spec.eval.horizon * dm.dts["test"].double().mean().item()
    persistence = {
        "nrmse": m["test/persistence_nrmse"],
        "rollout_nrmse": m["test/persistence_rollout_nrmse"],
        "corr_time": m["test/persistence_corr_time"],
        "corr_time_censored": m["test/persistence_corr_time"] >= horizon_time,
        "ms_per_rollout": 0.0,
        "params": 0,
    }
    return arm, persistence


def solver_arm(dm, spec) -> dict:
    """The coarse solve scored like the models: rollout from the last given frame, one step from every true frame
    of the window (`ups.training.evaluate.solver_baseline` does the rollout part for every run)."""
    from ups import catalog
    from ups.data.params import parameter_from
    from ups.training.metrics import CORR_THRESHOLD, nrmse, pearson, steps_above

    if len(dm.sources) != 1:
        raise ValueError(f"the solver arm takes a single-family spec, got {len(dm.sources)} tasks")
    src = dm.sources[0]
    row = catalog.get("families", src.family)
    solve = catalog.load(row.solver)
    c, h = spec.eval.context_frames, spec.eval.horizon
    traj = dm.states["test"].double().numpy()  # (N, E, C, X)
    n = traj.shape[0]
    params = dict(src.params)
    per_trajectory = [p.name for p in row.params if p.per_trajectory]
    for name in per_trajectory:
        params[name] = np.array(parameter_from(dm.layout, dm.params["test"].numpy(), name))
    started = time.perf_counter()
    try:
        frames = solve(traj[:, c - 1], dt=src.dt, horizon=h, params=params)  # (N, H, C, X)
        ms = 1000 * (time.perf_counter() - started) / n
        starts = traj[:, c - 1 : c - 1 + h].reshape(n * h, *traj.shape[2:])  # (N·H, C, X)
        for name in per_trajectory:
            params[name] = np.repeat(params[name], h)
        one = solve(starts, dt=src.dt, horizon=1, params=params).reshape(n, h, *traj.shape[2:])
    except FloatingPointError:
        nan = float("nan")
        return {"nrmse": nan, "rollout_nrmse": nan, "corr_time": nan, "corr_time_censored": False,
                "ms_per_rollout": nan, "params": 0}  # fmt: skip
    true = torch.from_numpy(traj[:, c : c + h])  # (N, H, C, X)
    pred, one = torch.from_numpy(frames), torch.from_numpy(one)
    curve = pearson(pred, true).mean(dim=0)  # (H,)
    return {
        "nrmse": nrmse(one, true).mean().item(),
        "rollout_nrmse": nrmse(pred, true).mean().item(),
        "corr_time": steps_above(curve).item() * src.dt,
        "corr_time_censored": bool((curve >= CORR_THRESHOLD).all()),
        "ms_per_rollout": ms,
        "params": 0,
    }


def table(arms: dict[str, dict]) -> str:
    rows = [
        "| arm | one-step nRMSE | rollout nRMSE | corr_time | ms / rollout | params | training |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in arms.items():
        corr = ("≥ " if a["corr_time_censored"] else "") + f"{a['corr_time']:.3g}"
        trained = f"{a['steps']} steps / {a['train_seconds']:.0f} s" if "steps" in a else "—"
        params = f"{a['params'] / 1e3:.0f}k" if a["params"] else "—"
        rows.append(
            f"| {name} | {a['nrmse']:.4g} | {a['rollout_nrmse']:.4g} | {corr} | {a['ms_per_rollout']:.3g} | "
            f"{params} | {trained} |"
        )
    return "\n".join(rows)


def measure(args: argparse.Namespace, extra: list[str], home: Path) -> dict:
    from ups.data.datamodule import PDEDataModule
    from ups.data.source import load_sources
    from ups.loading import from_checkpoint

    load = {"before": os.getloadavg()[0]}
    print(f"load average before: {load['before']:.2f}", flush=True)
    out, wall = run_operator(args.seed, extra, home)
    checkpoint = Path(out["checkpoint"])
    loaded = from_checkpoint(checkpoint)
    spec = loaded.spec
    torch.set_num_threads(spec.hardware.num_threads or torch.get_num_threads())  # what the run's trainer had
    timed = training_seconds(checkpoint, spec)
    fit, train = timed if timed else (wall, wall)
    load["after_operator"] = os.getloadavg()[0]
    print(
        f"operator: {out['steps']} of {out['planned_steps']} steps (stopped by {out['stopped_by'] or 'budget'}), "
        f"fit {fit:.1f} s, of which training {train:.1f} s; `ups-exp run` {wall:.0f} s"
        + ("" if timed else " (no Timer state in last.ckpt: the budget is the whole run's wall)")
        + f"; load average {load['after_operator']:.2f}",
        flush=True,
    )

    dm = PDEDataModule(spec, load_sources(spec.data, home), layout=loaded.layout)
    ups, persistence = neural_arm(loaded.predictor(), dm, spec)
    ups.update(steps=out["steps"], train_seconds=train)
    budget = args.fno_seconds if args.fno_seconds is not None else train
    print(f"FNO: training for {budget:.1f} s on {torch.get_num_threads()} threads", flush=True)
    fno_model, fno_log = train_fno(dm, spec, seconds=budget, seed=args.seed)
    fno, _ = neural_arm(fno_model, dm, spec)
    fno.update(steps=fno_log["steps"], train_seconds=fno_log["seconds"])
    print(
        f"FNO: {fno_log['steps']} steps in {fno_log['seconds']:.1f} s ({fno_log['cpu_seconds']:.0f} CPU s), "
        f"final loss {fno_log['final_loss']:.4g}, {fno['params']} parameters",
        flush=True,
    )
    if args.keep:
        torch.save(fno_model.state_dict(), home / "fno.pt")
    arms = {
        "ups operator": ups,
        "FNO (neuraloperator)": fno,
        "coarse solver (4× coarser)": solver_arm(dm, spec),
        "persistence": persistence,
    }
    load["after"] = os.getloadavg()[0]
    print(f"load average after: {load['after']:.2f}\n")
    run_metric = out["metrics"].get("test/rollout_nrmse", float("nan"))
    print(table(arms) + "\n")
    print(
        f"(the run's own test/rollout_nrmse: {run_metric:.4g}; recomputed here: {ups['rollout_nrmse']:.4g})"
    )
    ratios = {
        f"ups_over_{key}": ups["rollout_nrmse"] / arms[name]["rollout_nrmse"]
        for key, name in (
            ("fno", "FNO (neuraloperator)"),
            ("solver", "coarse solver (4× coarser)"),
            ("persistence", "persistence"),
        )
    }
    met = ratios["ups_over_fno"] <= TARGET
    print(
        f"ups / FNO rollout nRMSE: {ratios['ups_over_fno']:.3g} "
        f"(target ≤ {TARGET}: {'met' if met else 'NOT met'}; FNO budget {budget:.0f} s)"
    )
    print(f"ups / coarse solver rollout nRMSE: {ratios['ups_over_solver']:.3g}")
    print(f"ups / persistence rollout nRMSE: {ratios['ups_over_persistence']:.3g}")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        **ratios,
        "target_ups_over_fno": TARGET,
        "met": met,
        "arms": arms,
        "operator_fit_seconds": fit,
        "fno": {
            "n_modes": FNO_MODES,
            "fourier_modes_kept": FNO_MODES // 2 + 1,
            "hidden_channels": FNO_WIDTH,
            "n_layers": FNO_LAYERS,
            **fno_log,
        },
        "fno_budget_seconds": budget,
        "threads": torch.get_num_threads(),
        "run_test_rollout_nrmse": run_metric,
        "load_average": load,
        "overrides": extra,
        "seed": args.seed,
        "commit": commit,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def main() -> None:
    print(provenance_line(), flush=True)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a small run (smoke test of this script)")
    parser.add_argument(
        "--fno-seconds", type=float, help="the FNO's training budget (default: the operator's training time)"
    )
    parser.add_argument("--keep", type=Path, help="use this folder as the workspace and keep it (and fno.pt)")
    parser.add_argument("--json", type=Path, help="also write the last line's JSON to this file")
    parser.add_argument(
        "overrides", nargs="*", help="extra spec overrides for the operator's run (key=value)"
    )
    args = parser.parse_args()
    try:  # before minutes of training, not after
        import neuralop  # noqa: F401
    except ImportError:
        raise SystemExit(
            "benchmarks/quality.py needs the FNO peer: .venv/bin/pip install -c .venv/constraints.txt -e '.[bench]'"
        ) from None
    extra = (QUICK if args.quick else []) + args.overrides
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = measure(args, extra, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="ups-quality-") as home:
            result = measure(args, extra, Path(home))
    line = json.dumps(result)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
