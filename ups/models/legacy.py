"""Model files written before the catalogue (model format 1) load into today's modules unchanged in what they
predict: their state_dict keys are renamed, a refiner gets its gate (1: its network was trained without one), and
the conditioning layers' input columns are put in today's order.

Format 1: a network's parameters sat beside the predictor's normalization buffers; a refiner's conditioning input
was (params, Δt, k/K) and a steady prior's (params) alone. Format 2 (today): the network is the `net` submodule,
conditioned on (params, Δt) where a refiner's k/K is the last parameter column.
"""

from __future__ import annotations

import torch

MODEL_FORMAT = 2
"""Recorded with every checkpoint (`hyper_parameters.model_format`), export and registered model (config.json)."""

_BUFFERS = {"field_mean", "field_std", "input_mean", "input_std", "output_mean", "output_std"}


def _into_net(key: str, parts: tuple[str, ...]) -> str:
    """`operator.encoder.0.weight` → `operator.net.encoder.0.weight` (`parts`: the submodules that hold a net)."""
    for part in parts:
        if key.startswith(part):
            rest = key[len(part) :]
            return key if rest in _BUFFERS else f"{part}net.{rest}"
    return key


def migrate(state: dict[str, torch.Tensor], *, refined: bool, steady: bool) -> dict[str, torch.Tensor]:
    """A format-1 predictor state_dict as today's predictor holds it."""
    parts = ("operator.", "refiner.") if refined else ("",)
    out = {_into_net(k, parts): v for k, v in state.items()}
    if refined:  # (params, Δt, k/K) → (params, k/K, Δt); the refiner was trained ungated
        key = "refiner.net.cond.0.weight"
        w = out[key]
        out[key] = torch.cat([w[:, :-2], w[:, -1:], w[:, -2:-1]], dim=1)
        out["refiner.gate"] = torch.tensor(1.0)
    if steady:  # (params) → (params, Δt): Δt (zero for steady data) enters through a zero column
        key = "net.cond.0.weight"
        w = out[key]
        out[key] = torch.cat([w, torch.zeros_like(w[:, :1])], dim=1)
    return out
