"""What a person reads at the end of a run: the metrics table and two plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def task_names_in(metrics: dict[str, float]) -> list[str]:
    """Tasks that have `<split>/<task>/rollout_nrmse` entries, in first-seen order."""
    seen: dict[str, None] = {}
    for key in metrics:
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == "rollout_nrmse":
            seen[parts[1]] = None
    return list(seen)


def channel_metrics(metrics: dict[str, float], split: str) -> list[str]:
    """Per-channel names (`rollout_nrmse.<channel>`, ...) present for a split, in first-seen order."""
    return [
        key.split("/", 1)[1]
        for key in metrics
        if key.startswith(f"{split}/") and key.count("/") == 1 and "." in key.split("/", 1)[1]
        and not key.split("/", 1)[1].startswith("persistence_")
    ]  # fmt: skip


_EXTRA = ("operator_", "teacher_", "gain_", "speedup", "baseline_")
"""Reference predictors, gains and baselines, listed under the table."""


def coarse_lines(metrics: dict[str, float], extras: dict[str, float], split: str) -> list[str]:
    """The family's solve at 2×, 4× and 8× coarser grids (2D trajectories: `solver_x<f>_rollout_*`; steady data:
    `baseline_coarse_x<f>_*`) and the comparison at equal cost: the most accurate coarse solve whose ms per sample
    is at most the model's."""
    steady = any(k.startswith(f"{split}/baseline_coarse_x") for k in metrics)
    pattern, mine, cost = (
        ("baseline_coarse_x{}_{}", "nrmse", "model/sample_ms")
        if steady
        else ("solver_x{}_rollout_{}", "rollout_nrmse", "model/rollout_ms")
    )
    found = []
    for f in (2, 4, 8):
        err = metrics.get(f"{split}/" + pattern.format(f, "nrmse"))
        ms = metrics.get(f"{split}/" + pattern.format(f, "ms"))
        if err is not None and ms is not None and err == err:  # NaN: the solve diverged
            found.append((f, err, ms))
    if not found or f"{split}/{mine}" not in metrics:
        return []
    model = metrics[f"{split}/{mine}"]
    shown = ", ".join(f"{f}x {err:.4g} ({ms:.3g} ms)" for f, err, ms in found)
    lines = [f"{split}/{mine} next to the family's solve on coarser grids, per sample: {shown}"]
    model_ms = extras.get(cost)
    if model_ms is not None:
        cheaper = [(f, err) for f, err, ms in found if ms <= model_ms]
        if cheaper:
            f, err = min(cheaper, key=lambda x: x[1])
            verdict = "beats" if model < err else "does not beat"
            lines.append(
                f"  at equal cost (model {model_ms:.3g} ms per sample): the {f}x solve, {err:.4g}; the model "
                f"({model:.4g}) {verdict} it (model / solve {model / err:.3f})"
            )
        else:
            lines.append(
                f"  at equal cost: no coarse solve is as cheap as the model ({model_ms:.3g} ms per sample)"
            )
    return lines


def metrics_table(
    metrics: dict[str, float],
    *,
    wall_seconds: float,
    where: list[str],
    extras: dict[str, float] | None = None,
) -> str:
    rows = [("metric", "model", "persistence", "model / persistence")]
    tasks = task_names_in(metrics)
    extra = []
    for split in ("val", "test"):
        for name in (
            "nrmse",
            "rollout_nrmse",
            "nrmse_band_high",
            "corr_time",
            *(f"{t}/{n}" for t in tasks for n in ("nrmse", "rollout_nrmse")),
            *channel_metrics(metrics, split),
        ):
            key = f"{split}/{name}"
            if key not in metrics:
                continue
            model = metrics[key]
            head, _, last = name.rpartition("/")
            base = metrics.get(f"{split}/{head + '/' if head else ''}persistence_{last}")
            shown = f"{base:.4g}" if base is not None else "-"
            rows.append((key, f"{model:.4g}", shown, f"{model / base:.3f}" if base else "-"))
        solver = metrics.get(f"{split}/solver_rollout_nrmse")
        if solver is None and f"{split}/rollout_nrmse" in metrics:
            extra.append(f"{split}: no solver for this data (its family has none, or the data has no family)")
        elif (
            solver
            and f"{split}/rollout_nrmse" in metrics
            and f"{split}/solver_x4_rollout_nrmse" not in metrics
        ):
            model = metrics[f"{split}/rollout_nrmse"]
            extra.append(
                f"{split}/rollout_nrmse next to the coarse solver (4x coarser grid): model {model:.4g}, solver "
                f"{solver:.4g} (model / solver {model / solver:.3f}), solver "
                f"{metrics[f'{split}/solver_rollout_ms']:.3g} ms per rollout"
            )
        extra += coarse_lines(metrics, extras or {}, split)
        extra += [f"{k} = {v:.4g}" for k, v in metrics.items() if k.startswith(f"{split}/") and
                  k.count("/") == 1 and k.split("/")[1].startswith(_EXTRA)
                  and not k.split("/")[1].startswith("baseline_coarse_x")]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += extra
    lines.append(f"wall time: {wall_seconds:.1f} s")
    lines += where
    return "\n".join(lines)


def pipeline_summary(result) -> str:
    """Each stage's table, then the pipeline's parent run."""
    parts = []
    for record in result.stages:
        note = " (finished before: skipped)" if record.skipped else ""
        parts.append(f"== stage {record.stage}: run {record.run_id}{note}")
        parts.append(metrics_table(record.metrics, wall_seconds=record.wall_seconds, where=[]))
    parts.append(f"pipeline run {result.run_id}: {len(result.stages)} stages, {result.wall_seconds:.1f} s")
    return "\n".join(parts)


def plot_rollout(
    pred: np.ndarray,
    true: np.ndarray,
    *,
    context_frames: int,
    path: Path,
    channels: tuple[str, ...] = (),
    horizons: tuple[int, ...] = (),
) -> Path:
    """Pictures of one test trajectory (T, C, *grid): truth, prediction (context frames are given) and error.

    1D: one space-time row per channel. 2D: for each channel, truth, prediction and |error| at the chosen
    `horizons` (rollout steps after the context), one column per horizon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(pred), len(true))
    pred, true = pred[:n], true[:n]  # (T, C, *grid)
    names = channels or tuple(f"c{c}" for c in range(true.shape[1]))
    if true.ndim == 4:
        return _plot_2d(pred, true, context_frames=context_frames, path=path, names=names, horizons=horizons)
    rows = true.shape[1]
    fig, axes = plt.subplots(rows, 3, figsize=(12, 3.6 * rows), sharey=True, squeeze=False)
    for c in range(rows):
        vmax = float(np.abs(true[:, c]).max())
        for ax, data, title, cmap in (
            (axes[c, 0], true[:, c], "truth", "RdBu_r"),
            (axes[c, 1], pred[:, c], "prediction", "RdBu_r"),
            (axes[c, 2], np.abs(pred[:, c] - true[:, c]), "|error|", "magma"),
        ):
            im = ax.imshow(
                data,
                aspect="auto",
                origin="lower",
                cmap=cmap,
                vmin=0 if title == "|error|" else -vmax,
                vmax=None if title == "|error|" else vmax,
            )
            ax.axhline(context_frames - 0.5, color="k", lw=0.8, ls="--")
            ax.set_title(title if rows == 1 else f"{names[c]}: {title}")
            ax.set_xlabel("x index")
            fig.colorbar(im, ax=ax)
        axes[c, 0].set_ylabel("frame (dashed: end of given context)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_2d(pred, true, *, context_frames: int, path: Path, names, horizons) -> Path:
    """Per channel: three rows (truth, prediction, |error|), one column per horizon."""
    import matplotlib.pyplot as plt

    last = true.shape[0] - context_frames
    steps = sorted({h for h in horizons if 1 <= h <= last} or {1, max(last, 1)})
    rows = 3 * true.shape[1]
    fig, axes = plt.subplots(rows, len(steps), figsize=(3.2 * len(steps) + 1, 2.9 * rows), squeeze=False)
    for c in range(true.shape[1]):
        vmax = float(np.abs(true[:, c]).max())
        emax = float(np.abs(pred[:, c] - true[:, c])[context_frames:].max()) or 1.0
        for j, h in enumerate(steps):
            frame = context_frames - 1 + h
            for r, (data, title, cmap, lo, hi) in enumerate(
                (
                    (true[frame, c], "truth", "RdBu_r", -vmax, vmax),
                    (pred[frame, c], "prediction", "RdBu_r", -vmax, vmax),
                    (np.abs(pred[frame, c] - true[frame, c]), "|error|", "magma", 0, emax),
                )
            ):
                ax = axes[3 * c + r, j]
                im = ax.imshow(data.T, origin="lower", cmap=cmap, vmin=lo, vmax=hi)
                ax.set_title(f"{names[c]}: {title}, step {h}", fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
                fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_error_growth(model_steps: np.ndarray, persistence_steps: np.ndarray, *, path: Path) -> Path:
    """Mean nRMSE at each rollout step h, model vs persistence (per-sample arrays (B, H))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = np.arange(1, model_steps.shape[1] + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    for data, label in ((model_steps, "model"), (persistence_steps, "persistence")):
        mean = data.mean(axis=0)
        lo, hi = np.percentile(data, [10, 90], axis=0)
        ax.plot(h, mean, label=label)
        ax.fill_between(h, lo, hi, alpha=0.2)
    ax.set_xlabel("rollout step h")
    ax.set_ylabel("nRMSE (mean, 10–90% band)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def model_card(name, version, run_id, sources, metrics, gates, champion, champ_version) -> str:
    """The registered version's description: a short markdown model card."""
    rows = ["| metric | model | persistence |", "|---|---|---|"]
    for m in ("nrmse", "rollout_nrmse"):
        rows.append(f"| test/{m} | {metrics[f'test/{m}']:.4g} | {metrics[f'test/persistence_{m}']:.4g} |")
    lines = [
        f"# {name} v{version}",
        "",
        f"Trained in MLflow run `{run_id}`.",
        "",
        "**Data**: "
        + "; ".join(
            f"{s.family} {s.params} from {s.description.get('file', '?')} (Δt = {s.dt}, fingerprint `{s.fingerprint}`)"
            for s in sources
        )
        + ".",
        "",
        "**Test metrics** (held-out trajectories, PDEBench rollout protocol):",
        "",
        *rows,
        "",
    ]
    if champion is not None:
        lines.append(
            f"**Previous champion** v{champ_version.version} on the same split: test/rollout_nrmse {champion['test/rollout_nrmse']:.4g}."
        )
        lines.append("")
    lines.append("**Gates**:")
    lines += [f"- {k}: {'pass' if g.passed else 'FAIL'} — {g.detail}" for k, g in gates.items()]
    lines += [
        "",
        "Load: `mlflow.pyfunc.load_model(uri).predict(states, params={'steps': K})`, states (B, X) float32.",
    ]
    return "\n".join(lines)


def plot_task_bars(metrics: dict[str, float], *, split: str, path: Path) -> Path:
    """Per-task rollout nRMSE of the model next to persistence (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = task_names_in(metrics)
    model = [metrics[f"{split}/{t}/rollout_nrmse"] for t in tasks]
    still = [metrics[f"{split}/{t}/persistence_rollout_nrmse"] for t in tasks]
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(1.6 * len(tasks) + 2, 4))
    ax.bar(x - 0.2, model, 0.4, label="model")
    ax.bar(x + 0.2, still, 0.4, label="persistence")
    ax.set_xticks(x, tasks, rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel(f"{split} rollout nRMSE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
