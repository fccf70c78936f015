"""The registered model, as MLflow "models from code": this file is logged, not a pickle.

Artifacts: `weights` (an .npz of the state_dict, read with allow_pickle=False) and `config` (JSON: model config,
ν, Δt, normalization, resolved spec, data fingerprint). Nothing is unpickled when the model loads.

predict(states, params={"steps": K, "task": NAME}): states (B, X) float32 physical states → the next state (B, X)
for K = 1, or the K-step autoregressive rollout (B, K, X). `task` picks the PDE (multi-task models; default: the
first task).
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class UpsOperatorModel(PythonModel):
    def load_context(self, context) -> None:
        import torch

        from ups.models.config import OperatorConfig
        from ups.models.operator import LatentOperator

        with open(context.artifacts["config"]) as f:
            self.config = json.load(f)
        weights = np.load(context.artifacts["weights"], allow_pickle=False)
        self.tasks = self.config["tasks"]
        first = next(iter(self.tasks.values()))
        self.model = LatentOperator(
            OperatorConfig(**self.config["model"]), num_fields=1, num_params=len(first["params"])
        )
        self.model.load_state_dict({k: torch.from_numpy(weights[k]) for k in weights.files})
        self.model.eval()

    def predict(self, context, model_input, params=None):
        import torch

        params = params or {}
        steps = int(params.get("steps", 1))
        task = params.get("task") or next(iter(self.tasks))
        if task not in self.tasks:
            raise ValueError(f"unknown task {task!r}; the model knows {sorted(self.tasks)}")
        if steps < 1:
            raise ValueError(f"`steps >= 1` must hold, got (steps={steps})")
        if isinstance(model_input, dict):  # a named tensor input
            (model_input,) = model_input.values()
        if hasattr(model_input, "to_numpy"):  # a DataFrame
            model_input = model_input.to_numpy()
        x = np.asarray(model_input, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.config["num_points"]:
            raise ValueError(f"states must be (batch, {self.config['num_points']}), got {x.shape}")
        u = torch.from_numpy(x).unsqueeze(1)  # (B, C=1, X)
        b = u.shape[0]
        p = torch.tensor(self.tasks[task]["params"], dtype=torch.float32).expand(b, -1)  # (B, P)
        dt = torch.full((b,), float(self.tasks[task]["dt"]))
        with torch.no_grad():
            out = self.model.rollout(u, p, dt, steps)[:, :, 0]  # (B, K, X)
        return (out[:, 0] if steps == 1 else out).numpy()


mlflow.models.set_model(UpsOperatorModel())
