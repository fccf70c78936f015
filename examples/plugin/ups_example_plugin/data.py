"""`npz_trajectories`: trajectories in a NumPy .npz file.

Layout: `states` (N, T, X) or (N, T, C, X), `x` (X,), `dt` (a scalar), optional per-trajectory parameters as (N,)
arrays named `param_<name>`, and an optional `channels` array of names. It says no family: ups then reports the
persistence baseline and no solver baseline ("no solver for this data").
"""

from __future__ import annotations

import numpy as np

from ups import Trajectories


def read(path: str, cfg: dict) -> Trajectories:
    """What ups calls with `data.path` and `data.options` (here: `scale`, a factor applied to the states)."""
    with np.load(path, allow_pickle=False) as f:
        states = f["states"].astype(np.float32)
        x = f["x"]
        dt = float(f["dt"])
        params = {k.removeprefix("param_"): f[k] for k in f.files if k.startswith("param_")}
        channels = tuple(str(c) for c in f["channels"]) if "channels" in f.files else None
    if states.ndim == 3:
        states = states[:, :, None]  # (N, T, 1, X)
    states = states * float(cfg.get("scale", 1.0))
    return Trajectories(
        states=states,
        dt=dt,
        channels=channels or tuple(f"u{i}" for i in range(states.shape[2])),
        coords=(x,),
        params=params,
        family=None,
    )


def write(path: str, states: np.ndarray, x: np.ndarray, dt: float, **params: np.ndarray) -> None:
    """The inverse of `read` (for tests and examples)."""
    np.savez(path, states=states, x=x, dt=np.float64(dt), **{f"param_{k}": v for k, v in params.items()})
