"""Evidence gates a candidate must pass to become the champion (all on the held-out test split)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ups.spec.metrics import direction
from ups.spec.schema import GatesConfig
from ups.training.metrics import per_sample_metric


@dataclass
class Gate:
    value: float | None
    passed: bool
    detail: str

    def to_json(self) -> dict:
        return {"value": self.value, "passed": self.passed}


def paired_improvement(candidate: np.ndarray, champion: np.ndarray, *, margin: float) -> float:
    """One-sided Wilcoxon signed-rank p-value that candidate < (1 − margin) × champion, sample by sample."""
    from scipy.stats import wilcoxon

    diff = candidate - (1 - margin) * champion
    if np.allclose(diff, 0):
        return 1.0
    return float(wilcoxon(diff, alternative="less").pvalue)


def evaluate_gates(
    cfg: GatesConfig,
    candidate: dict,
    cand_samples: dict,
    champion: dict | None,
    champ_samples: dict | None,
    task_names: list[str] | None = None,
    spec=None,
) -> dict[str, Gate]:
    """Thresholds are bounds in each metric's good direction (an upper bound on an error, a lower bound on
    corr_time or a plugin metric with `higher_is_better`); `spec` finds its `eval.metrics` plugins' directions."""
    gates: dict[str, Gate] = {}
    for name, bound in cfg.thresholds.items():
        v = candidate[name]
        if direction(name, spec) == "maximize":
            gates[f"threshold:{name}"] = Gate(v, bool(v >= bound), f"{name} = {v:.4g} (must be >= {bound})")
        else:
            gates[f"threshold:{name}"] = Gate(v, bool(v <= bound), f"{name} = {v:.4g} (must be <= {bound})")
    if cfg.beat_persistence:  # the stage's trivial baselines: persistence, or the steady baselines
        pairs = [
            (m, f"persistence_{m}")
            for m in ("rollout_nrmse", "nrmse")
            if f"test/persistence_{m}" in candidate
        ]
        pairs = pairs or [("nrmse", b) for b in ("baseline_mean_nrmse", "baseline_harmonic_nrmse")]
        ratios = [candidate[f"test/{m}"] / candidate[f"test/{b}"] for m, b in pairs]
        gates["beat_persistence"] = Gate(
            ratios[0],
            all(r < 1 for r in ratios),
            "model/baseline: "
            + ", ".join(f"{m} vs {b} {r:.3f}" for (m, b), r in zip(pairs, ratios))
            + " (must be < 1)",
        )
    if cfg.stable_rollout and "rollout_steps" in cand_samples:
        steps = cand_samples["rollout_steps"].numpy()
        finite = float(np.isfinite(steps).mean())
        gates["stable_rollout"] = Gate(
            finite, finite == 1.0, f"finite rollout errors: {finite:.1%} to step {steps.shape[1]}"
        )
    if cfg.beat_champion:
        if champion is None:
            gates["beat_champion"] = Gate(None, True, "no champion yet")
        else:
            c = per_sample_metric(cand_samples, cfg.champion_metric, task_names).numpy()
            k = per_sample_metric(champ_samples, cfg.champion_metric, task_names).numpy()
            sign = -1.0 if direction(cfg.champion_metric, spec) == "maximize" else 1.0  # compare as errors
            c, k = sign * c, sign * k
            p = paired_improvement(c, k, margin=sign * cfg.champion_margin)
            better = c.mean() <= (1 - sign * cfg.champion_margin) * k.mean() and p < cfg.champion_p_value
            gates["beat_champion"] = Gate(
                p,
                bool(better) and not math.isnan(p),
                f"{cfg.champion_metric}: {sign * c.mean():.4g} vs champion {sign * k.mean():.4g}, margin "
                f"{cfg.champion_margin}, Wilcoxon p = {p:.3g} (must be < {cfg.champion_p_value})",
            )
    return gates
