"""LightningModule of the `consistency_distill` stage: a student that reproduces the K-step refiner (the teacher)
in 1 or 2 evaluations.

The student starts from the teacher's weights. On the fly, the frozen teacher refines the operator's prediction
through all K levels, keeping each level's noised input z̃ᵏ (one noise draw) and its final output ẑᴷ. The student
S, evaluated at a level k it uses at inference, must map z̃ᵏ to ẑᴷ in one step: z̃ᵏ − σ_k S(z_t, z̃ᵏ, k) ≈ ẑᴷ, i.e.
‖S − (z̃ᵏ − ẑᴷ)/σ_k‖² (the refiner's loss, with the teacher's output in place of the true state).

A `pde_refiner` teacher is one network: the student is a copy of it whose k = 0 prediction must be the teacher's
ẑᴷ (output distillation, 1 evaluation); with 2 evaluations, the student's own first output (not the teacher's, so
training sees what inference does) is noised at level 1 and denoised to ẑᴷ.
Legend: B batch, C fields, X grid points.
"""

from __future__ import annotations

import copy

import torch

from ups.data.params import LEGACY_LAYOUT
from ups.models.legacy import MODEL_FORMAT
from ups.models.refiner import (
    AtSteps,
    DistilledPDERefiner,
    PDERefiner,
    RefinedOperator,
    pde_student_steps,
    student_steps,
)
from ups.training.operator_module import optimizers_for
from ups.training.stage_module import StageModule, check_finite, ema_update


class ConsistencyDistillModule(StageModule):
    TRAINED = "student"

    def __init__(
        self,
        spec: dict,
        lineage: list | tuple = (),
        layout: list | tuple = LEGACY_LAYOUT,
        io: dict | None = None,
        meta: dict | None = None,
        model_format: int = MODEL_FORMAT,
        upstream_state: dict | None = None,
    ) -> None:
        """`upstream_state`: the teacher predictor's weights (operator + refiner; absent when loading a checkpoint)."""
        super().__init__(spec, lineage, layout, io, meta, model_format)
        self.save_hyperparameters(ignore=["upstream_state"])
        teacher = self.build(self.lineage[:-1])
        if upstream_state is not None:
            teacher.load_state_dict(upstream_state)
        teacher.requires_grad_(False)
        if isinstance(teacher, PDERefiner):  # one network: the student is a copy of all of it
            self.teacher_model = teacher
            self.levels = pde_student_steps(self.spec.stage.num_evals)
            self.student = copy.deepcopy(teacher).requires_grad_(True)
            self.student.steps = self.levels
            self.student_ema = copy.deepcopy(self.student).requires_grad_(False)
            return
        self.operator, self.teacher_refiner = teacher.operator, teacher.refiner
        self.student = copy.deepcopy(teacher.refiner).requires_grad_(True)
        self.student_ema = copy.deepcopy(teacher.refiner)
        self.levels = student_steps(teacher.num_steps, self.spec.stage.num_evals)

    def teacher(self) -> RefinedOperator | PDERefiner:
        if hasattr(self, "teacher_model"):
            return self.teacher_model
        t = self.lineage[-2].stage
        return RefinedOperator(
            self.operator, self.teacher_refiner, num_steps=t.num_steps, sigma_min=t.sigma_min
        )

    def predictor(self) -> RefinedOperator | DistilledPDERefiner:
        if hasattr(self, "teacher_model"):
            return DistilledPDERefiner(self.student_ema)
        t = self.lineage[-2].stage
        return RefinedOperator(
            self.operator, self.student_ema, num_steps=t.num_steps, sigma_min=t.sigma_min, steps=self.levels
        )

    def references(self) -> dict:
        if hasattr(self, "teacher_model"):  # the teacher's own k = 0 prediction stands for its operator
            return {"operator": AtSteps(self.teacher_model, ()), "teacher": self.teacher_model}
        return {"operator": self.operator, "teacher": self.teacher()}

    def warm_started(self) -> None:
        self.student.load_state_dict(self.student_ema.state_dict())

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        out = {}
        for key in [k for k in metrics if k.endswith("teacher_rollout_nrmse")]:
            head = key[: -len("teacher_rollout_nrmse")]
            op, teacher = metrics[f"{head}operator_rollout_nrmse"], metrics[key]
            out[f"{head}gain_kept_rollout_nrmse"] = _share(op - metrics[f"{head}rollout_nrmse"], op - teacher)
            op, teacher = metrics[f"{head}operator_corr_time"], metrics[f"{head}teacher_corr_time"]
            out[f"{head}gain_kept_corr_time"] = _share(metrics[f"{head}corr_time"] - op, teacher - op)
        if self.timing.get("model") and "teacher" in self._timing_reference:
            out["speedup"] = self._timing_reference["teacher"] / self.timing["model"]
        return out

    def _eval_epoch_end(self, split: str) -> None:
        if "teacher" in self.timing:  # measured once (the teacher is frozen and then cached)
            self._timing_reference = {"teacher": self.timing["teacher"]}
        super()._eval_epoch_end(split)

    _timing_reference: dict[str, float] = {}

    def step_loss(self, batch, batch_idx: int) -> torch.Tensor:
        window, params, dt, _task = batch  # (B, K+1, C, *grid): only the first state is used
        if hasattr(self, "teacher_model"):
            return self._log_loss(self._pde_refiner_loss(window[:, 0], params, dt), window.shape[0])
        teacher = self.teacher()
        with torch.no_grad():
            z_t, z_op = teacher.operator_step(window[:, 0], params, dt)  # (B, C, *grid) each
            z, noisy = z_op, {}
            for k in teacher.steps:
                noisy[k], z = teacher.refine_step(z_t, z, z_op, k, params, dt)
        pick = torch.randint(len(self.levels), (z_t.shape[0],), device=z_t.device)  # (B,)
        k = torch.tensor(self.levels, device=z_t.device)[pick]  # (B,)
        stacked = torch.stack([noisy[level] for level in self.levels])  # (L, B, C, *grid)
        z_in = stacked[pick, torch.arange(z_t.shape[0], device=z_t.device)]  # (B, C, *grid)
        sigma = (teacher.sigma_min ** (k.double() / teacher.num_steps)).to(z_t.dtype)  # (B,)
        target = (z_in - z) / sigma.view(-1, *([1] * (z.ndim - 1)))
        pred = self.student(z_t, z_in, z_op, k.to(z_t.dtype) / teacher.num_steps, sigma, params, dt)
        return self._log_loss((pred - target).square().mean(), z_t.shape[0])

    def _pde_refiner_loss(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """Output distillation of a PDERefiner: the student's k = 0 prediction ≈ the teacher's K-step output ẑᴷ;
        with 2 evaluations, its own first output (as at inference) noised at level 1, denoised to ẑᴷ."""
        teacher, student = self.teacher_model, self.student
        with torch.no_grad():
            z_t = teacher.normalize(u)  # (B, C, *grid)
            z = teacher.predict_zero(z_t, params, dt)
            for k in teacher.steps:
                _, z = teacher.refine_step(z_t, z, k, params, dt)
        first = student.predict_zero(z_t, params, dt)
        loss = (first - z).square().mean()
        for k in self.levels:
            sigma = teacher.sigma(k)
            z_noisy = first.detach() + sigma * torch.randn_like(first)
            level = torch.full((u.shape[0],), k / teacher.num_steps, device=u.device, dtype=u.dtype)
            pred = student.predict_noise(z_t, z_noisy, level, params, dt)
            loss = loss + (pred - (z_noisy - z) / sigma).square().mean()
        return loss

    def _log_loss(self, loss: torch.Tensor, batch_size: int) -> torch.Tensor:
        check_finite(loss, self.global_step)
        self.log("train/loss", loss, batch_size=batch_size)
        self.log("loss", loss, prog_bar=True, logger=False, batch_size=batch_size)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        ema_update(self.student_ema, self.student, self.spec.stage.ema_decay)

    def configure_optimizers(self):
        return optimizers_for(self, self.student)


def _share(achieved: float, possible: float) -> float:
    """The fraction of a gain kept; NaN when the teacher gained nothing to keep."""
    return achieved / possible if possible > 0 else float("nan")
