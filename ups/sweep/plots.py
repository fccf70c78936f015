"""Optuna's plots (history, parameter importance, parallel coordinates) as PNG files."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def save_study_plots(study, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    plots = {
        "optimization_history": vis.plot_optimization_history,
        "param_importances": vis.plot_param_importances,
        "parallel_coordinate": vis.plot_parallel_coordinate,
    }
    saved = []
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" warnings
                if len(study.directions) > 1:
                    ax = plot(study, target=lambda t: t.values[0], target_name="objective 0")
                else:
                    ax = plot(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            path = folder / f"{name}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=100)
            plt.close(fig)
            saved.append(path)
        except Exception as exc:  # e.g. importance needs two completed trials with varied params
            log.info("no %s plot: %s", name, exc)
    return saved
