"""The registered model, as MLflow "models from code": this file is logged, not a pickle.

Artifacts: `weights` (an .npz of the predictor's state_dict, read with allow_pickle=False) and `config` (JSON: the
stage kind, the lineage of resolved specs that fixes the architecture, the PDE-parameter layout, the tasks' Δt
and parameter vectors). Nothing is unpickled when the model loads; the predictor is built by `ups.loading`, so a
chained predictor (operator + refiner, or a distilled student) loads like an operator.

Time-stepping stages: predict(states, params={"steps": K, "task": NAME, "L": VALUE}): states (B, C, *grid) float32
physical states → the next state (B, C, *grid) for K = 1, or the K-step autoregressive rollout (B, K, C, *grid); a
1D one-channel model takes and gives (B, X) and (B, K, X). `task` picks the PDE (multi-task models; default: the
first task); `L` sets a Kuramoto–Sivashinsky domain length. Refined predictors draw their noise from a fixed seed, so
the same input gives the same output.
Steady prior: predict(inputs) with inputs (B, C_in, *grid) → the solution (B, C, *grid) ((B, X) in 1D with one
channel). A model built by a plugin needs the plugin installed; without it, loading says what to install.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class UpsPredictorModel(PythonModel):
    def load_context(self, context) -> None:
        import torch

        from ups.loading import from_registered_files
        from ups.registry.plugins import require_plugins

        with open(context.artifacts["config"]) as f:
            self.config = json.load(f)
        require_plugins(self.config.get("plugins", []))
        weights = np.load(context.artifacts["weights"], allow_pickle=False)
        state = {k: torch.from_numpy(weights[k]) for k in weights.files}
        self.loaded = from_registered_files(self.config, state, source="pyfunc")
        self.model = self.loaded.predictor()
        self.tasks = self.config["tasks"]
        self.io = self.loaded.io
        self.flat = self.io.spatial_dims == 1 and self.io.out_channels == 1

    def predict(self, context, model_input, params=None):
        import torch

        from ups.data.params import param_vector

        params = params or {}
        if isinstance(model_input, dict):  # a named tensor input
            (model_input,) = model_input.values()
        if hasattr(model_input, "to_numpy"):  # a DataFrame
            model_input = model_input.to_numpy()
        x = np.asarray(model_input, dtype=np.float32)
        io = self.io
        if self.loaded.stage.steady:
            want = (io.in_channels, *io.grid)
            if x.ndim != len(want) + 1 or x.shape[1:] != want:
                raise ValueError(f"inputs must be (batch, {', '.join(map(str, want))}), got {x.shape}")
            info = next(iter(self.tasks.values()))
            p = torch.tensor(param_vector(self.loaded.layout, info.get("family"), info)).expand(len(x), -1)
            with torch.no_grad():
                out = self.model(torch.from_numpy(x), p.float())
            return (out[:, 0] if self.flat else out).numpy()
        steps = int(params.get("steps", 1))
        task = params.get("task") or next(iter(self.tasks))
        if task not in self.tasks:
            raise ValueError(f"unknown task {task!r}; the model knows {sorted(self.tasks)}")
        if steps < 1:
            raise ValueError(f"`steps >= 1` must hold, got (steps={steps})")
        want = tuple(io.grid) if self.flat else (io.out_channels, *io.grid)
        if x.ndim != len(want) + 1 or x.shape[1:] != want:
            raise ValueError(f"states must be (batch, {', '.join(map(str, want))}), got {x.shape}")
        info = self.tasks[task]
        vector = info["params"]
        if params.get("L") is not None:  # a per-trajectory parameter (Kuramoto–Sivashinsky's domain length)
            vector = param_vector(self.loaded.layout, info["family"], {"L": float(params["L"])})
        u = torch.from_numpy(x).unsqueeze(1) if self.flat else torch.from_numpy(x)  # (B, C, *grid)
        b = u.shape[0]
        p = torch.tensor(vector, dtype=torch.float32).expand(b, -1)  # (B, P)
        dt = torch.full((b,), float(info["dt"]))
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            out = self.model.rollout(u, p, dt, steps)  # (B, K, C, *grid)
            out = out[:, :, 0] if self.flat else out
        return (out[:, 0] if steps == 1 else out).numpy()


mlflow.models.set_model(UpsPredictorModel())
