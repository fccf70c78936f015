"""What every trajectory stage's LightningModule shares: the resolved spec and its lineage in the checkpoint,
PDEBench-style evaluation of the stage's predictor next to persistence (and next to the frozen predictors it
builds on), per-sample errors gathered across ranks, and checkpoints that hold plain keys and the RNG state.

Legend: B batch, T frames, C fields, X grid points.
"""

from __future__ import annotations

import logging
import math
import re
import time

import lightning.pytorch as L
import torch
from torch import nn

from ups.data.params import LEGACY_LAYOUT
from ups.models.legacy import MODEL_FORMAT
from ups.models.operator import rollout
from ups.plugin import ModelIO
from ups.spec.load import spec_from_dict
from ups.spec.metrics import report_horizons
from ups.training.metrics import evaluate_batch, summarize_tasks
from ups.training.oom import OOMGuard, is_oom
from ups.training.stages import REFERENCE, plain_key

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN/inf (the reason a sweep records is `nan`)."""


class NonFiniteMetricError(FloatingPointError):
    """A validation error metric is NaN or infinite (a rollout diverged although the training loss is finite)."""


OWN_ERROR = re.compile(r"(rollout_)?nrmse(_band_[a-z]+|@\d+)?")
"""The predictor's own error metrics (a task's too: `burgers/rollout_nrmse`)."""


def check_finite_metrics(metrics: dict[str, float], split: str, epoch: int) -> None:
    """Error metrics (`*nrmse*`) must be finite: a diverged rollout ends the run (or trial) FAILED, with the reason."""
    own = (k for k in metrics if OWN_ERROR.fullmatch(k.rpartition("/")[2]))  # not gains, not the references
    bad = {k: metrics[k] for k in own if not math.isfinite(metrics[k])}
    if bad:
        first = sorted(bad, key=lambda k: ("rollout" not in k, k))[:3]  # the rollout's own first
        shown = ", ".join(f"{split}/{k} = {bad[k]}" for k in first) + (", ..." if len(bad) > 3 else "")
        raise NonFiniteMetricError(
            f"non-finite validation metrics after epoch {epoch} ({len(bad)}): {shown} (a diverging rollout)"
        )


def check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"non-finite training loss at step {step}: {loss.item()}")


class StageModule(L.LightningModule):
    """Subclasses build their networks, `step_loss` (the training step's loss), `configure_optimizers` and
    `predictor()`. The training step runs `step_loss` under the `hardware.oom` policy (ups.training.oom)."""

    TRAINED = "model"
    """The attribute holding the network this stage trains (what `hardware.compile` compiles)."""
    FROZEN_REFERENCES = True
    """Whether `references()` stay fixed during training (scored once per split, then cached): False for a stage
    whose references are views of the network it trains."""

    def __init__(
        self,
        spec: dict,
        lineage: list[dict] | tuple = (),
        layout: list[str] | tuple = LEGACY_LAYOUT,
        io: dict | None = None,
        meta: dict | None = None,
        model_format: int = MODEL_FORMAT,
    ) -> None:
        """`io`: the data's shapes (`ModelIO` as a dict); `meta`: the data's resolved families. Both are stored
        with the checkpoint (as is `model_format`), so the predictor is rebuilt without the data."""
        super().__init__()
        self.spec = spec_from_dict(spec)
        self.lineage = [*(spec_from_dict(d) for d in lineage), self.spec]
        """Resolved specs from the operator's to this stage's: they define every predictor's architecture."""
        self.layout = tuple(layout)
        self.io = (
            ModelIO(**{k: tuple(v) if isinstance(v, list) else v for k, v in (io or {}).items()})
            if io
            else None
        )
        self.meta = dict(meta or {})
        self._per_sample: dict[str, list[torch.Tensor]] = {}
        self._references: dict[str, dict[str, list[torch.Tensor]]] = {}
        self._reference_metrics: dict[str, dict[str, dict[str, float]]] = {}
        self.timing: dict[str, float] = {}
        """Seconds spent predicting in the latest evaluation, per predictor (`model` and each reference)."""
        self.last_eval: dict[str, dict] = {}
        """Per split: per-sample errors and one example rollout from the latest evaluation."""
        self.oom = OOMGuard(self.spec.hardware.oom)

    # training: the subclass's loss under the OOM policy --------------------------------------------
    def step_loss(self, batch, batch_idx: int) -> torch.Tensor:
        raise AssertionError(f"{type(self).__name__} must define step_loss()")

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        if not self.oom.active and not self.oom.agrees(self):  # under DDP even `fail` is agreed by all ranks
            return self.step_loss(batch, batch_idx)
        return self.oom.step(self, batch, batch_idx)

    def backward(self, loss: torch.Tensor, *args, **kwargs) -> None:
        if not self.oom.active:
            return super().backward(loss, *args, **kwargs)
        try:
            super().backward(loss, *args, **kwargs)
        except Exception as exc:
            if not is_oom(exc):
                raise
            self.oom.backward_failed(self, exc)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        if not self.oom.active:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

        def closure():
            out = optimizer_closure()
            # a skipped step leaves no gradient, so the optimizer changes nothing; returning None also tells
            # Lightning's AMP plugin to skip unscaling and the scaler's step (which would fail on no gradients)
            return None if self.oom.after_closure(self) else out

        optimizer.step(closure=closure)

    def configure_model(self) -> None:
        """`hardware.compile`: compile the trained network in place (`nn.Module.compile`: no wrapper module, so
        state-dict keys stay plain and checkpoints resume, load and promote as eager ones do). Training calls the
        network, so it runs the compiled graph. Compilation is lazy: the first call compiles, inside a guard that
        logs a failure once and continues eager."""
        if self.spec.hardware.compile and not getattr(self, "_compile_set", False):
            self._compile_set = True
            compile_guarded(getattr(self, self.TRAINED))

    def plugin_metrics(self):
        """The spec's `eval.metrics` (loaded once, with the datamodule's coordinates and parameter names)."""
        if getattr(self, "_plugins", None) is None:
            from ups.training.metrics import PluginMetrics

            datamodule = self.trainer.datamodule if self.trainer is not None else None
            self._plugins = PluginMetrics(self.spec, datamodule)
        return self._plugins

    def build(self, lineage: list | None = None) -> nn.Module:
        """A predictor of this stage's kind (or of the stage that made `lineage`) for the data's shapes."""
        from ups.training.stages import stage_of

        lineage = self.lineage if lineage is None else lineage
        return stage_of(lineage[-1]).load("predictor")(lineage, self.layout, self.io, self.meta)

    def predictor(self) -> nn.Module:
        """The one-step predictor this stage is evaluated (and registered) as."""
        raise AssertionError(f"{type(self).__name__} must define predictor()")

    def references(self) -> dict[str, nn.Module]:
        """Frozen predictors scored next to this one on the same trajectories and noise (e.g. `operator`)."""
        return {}

    def setup_data(self, datamodule) -> None:
        """Called once before training with the datamodule (normalization statistics come from train only)."""

    def warm_started(self) -> None:
        """Called after `init.from` loaded the predictor's weights: make the trained network match them (a stage
        whose predictor holds an average of the trained weights copies it back)."""

    def forward(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        return self.predictor()(u, params, dt)

    # evaluation -----------------------------------------------------------------------------------
    def _evaluate(self, model: nn.Module, batch, batch_idx: int, name: str) -> dict[str, torch.Tensor]:
        traj, params, dt, task = batch  # (B, T, C, *grid), (B, P), (B,), (B,)
        e = self.spec.eval
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(
                getattr(self.spec.stage, "eval_seed", 0) * 1_000_003 + batch_idx * 1_009 + self.global_rank
            )
            out = evaluate_batch(
                model, traj, params, dt, context_frames=e.context_frames, horizon=e.horizon,
                plugins=self.plugin_metrics() if name == "model" else None, task=task,
            )  # fmt: skip
        self.timing[name] = self.timing.get(name, 0.0) + time.perf_counter() - start
        out["task"] = task
        return out

    def _eval_step(self, batch, batch_idx: int, split: str) -> None:
        model = self.predictor()
        for name, v in self._evaluate(model, batch, batch_idx, "model").items():
            self._per_sample.setdefault(name, []).append(v.detach().cpu())
        for ref, ref_model in self.references().items():
            if self.FROZEN_REFERENCES and split in self._reference_metrics.get(ref, {}):
                continue  # frozen: the same trajectories and noise give the same numbers
            store = self._references.setdefault(ref, {})
            for name, v in self._evaluate(ref_model, batch, batch_idx, ref).items():
                store.setdefault(name, []).append(v.detach().cpu())
        if "example" not in self._per_sample:
            traj, params, dt, _ = batch
            c = self.spec.eval.context_frames
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                pred = rollout(model, traj[:1, c - 1], params[:1], dt[:1], self.spec.eval.horizon)
            self._per_sample["example"] = [torch.cat([traj[:1, :c], pred], dim=1).cpu(), traj[:1].cpu()]

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def on_validation_epoch_start(self) -> None:
        self.timing = {}

    def on_test_epoch_start(self) -> None:
        self.timing = {}

    def _summary(self, local: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        gathered = self._gather(local)
        return gathered, summarize_tasks(
            gathered, report_horizons(self.spec), self.spec.data.task_names(), tuple(self.io.channels)
        )

    def _eval_epoch_end(self, split: str) -> None:
        example = self._per_sample.pop("example", None)
        local = {k: torch.cat(v) for k, v in self._per_sample.items()}
        self._per_sample = {}
        if not local:
            return
        gathered, metrics = self._summary(local)
        for ref in self.references():
            cached = self._reference_metrics.setdefault(ref, {})
            if split not in cached or not self.FROZEN_REFERENCES:
                _, cached[split] = self._summary(
                    {k: torch.cat(v) for k, v in self._references.pop(ref).items()}
                )
            for key, value in cached[split].items():
                head, _, base = key.rpartition("/")
                if base in REFERENCE:
                    metrics[f"{head}/{ref}_{base}" if head else f"{ref}_{base}"] = value
        metrics.update(self.derived_metrics(metrics))
        if split == "val":
            check_finite_metrics(metrics, split, self.current_epoch)
        self.log_dict({f"{split}/{k}": v for k, v in metrics.items()}, sync_dist=False, rank_zero_only=False)
        self.last_eval[split] = {"per_sample": gathered, "metrics": metrics, "example": example}

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Metrics computed from the others (gains over the references); keys without the split prefix."""
        return {}

    def _gather(self, local: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Concatenate per-sample errors across ranks (shards differ in size by at most one)."""
        if self.trainer is None or self.trainer.world_size == 1:
            return local
        out = {}
        for name, v in local.items():
            n = torch.tensor([v.shape[0]], device=self.device)
            sizes = self.all_gather(n).flatten().tolist()
            width = max(sizes)
            padded = torch.zeros((width, *v.shape[1:]), dtype=v.dtype, device=self.device)
            padded[: v.shape[0]] = v.to(self.device)
            every = self.all_gather(padded)  # (world, width, ...)
            out[name] = torch.cat([every[r, : sizes[r]] for r in range(len(sizes))]).cpu()
        return out

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # checkpoints: plain keys, and the RNG state for exact resume -----------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {plain_key(k): v for k, v in checkpoint["state_dict"].items()}
        checkpoint["ups_rng"] = {"torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        made = checkpoint.get("hyper_parameters", {}).get("model_format", 1)
        if made != MODEL_FORMAT:
            raise RuntimeError(
                f"this checkpoint was written by an earlier version of ups (model format {made}): it loads for "
                "eval, export, promote and as a later stage's upstream, but its training cannot be resumed; start "
                "a new run"
            )
        if "ups_rng" in checkpoint:
            torch.set_rng_state(checkpoint["ups_rng"]["torch"])


def compile_guarded(net: nn.Module) -> None:
    """`net.compile()`, with its first (compiling) call guarded: if compilation fails, log it once and run eager."""
    try:
        net.compile()
    except Exception as exc:  # noqa: BLE001 - compile is an optimization: never the reason a run fails
        log.warning("torch.compile is unavailable (%s: %s): training runs eager", exc.__class__.__name__, exc)
        return
    compiled = net._compiled_call_impl  # torch 2.13: what nn.Module.__call__ runs once compiled

    def first_call(*args, **kwargs):
        try:
            out = compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - Dynamo/Inductor errors surface here, at the first call
            log.warning(
                "torch.compile failed (%s: %s): training continues eager",
                exc.__class__.__name__,
                " ".join(str(exc).split())[:300],
            )
            net._compiled_call_impl = None
            return net(*args, **kwargs)
        net._compiled_call_impl = compiled  # compiled and working: no guard from now on
        return out

    net._compiled_call_impl = first_call


def ema_update(average: nn.Module, current: nn.Module, decay: float) -> None:
    """average ← decay · average + (1 − decay) · current, parameter by parameter."""
    with torch.no_grad():
        for a, c in zip(average.parameters(), current.parameters(), strict=True):
            a.lerp_(c, 1 - decay)
