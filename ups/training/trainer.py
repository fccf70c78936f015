"""A Lightning Trainer from a spec's hardware profile and training settings."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

from ups.spec.schema import Spec
from ups.training.optim import mode


class ChecksummedCheckpoint(ModelCheckpoint):
    """Lightning's checkpointing, with a `<file>.sha256` beside every checkpoint (removed with it), which
    `ups.loading` checks wherever a checkpoint is read."""

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        if trainer.is_global_zero:
            from ups.loading import write_checksum

            write_checksum(Path(filepath))

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._remove_checkpoint(trainer, filepath)
        if trainer.is_global_zero:
            from ups.loading import CHECKSUM_SUFFIX

            Path(filepath + CHECKSUM_SUFFIX).unlink(missing_ok=True)


def checkpoint_callback(spec: Spec, run_dir: Path) -> ModelCheckpoint:
    return ChecksummedCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=spec.train.checkpoint_metric,
        mode=mode(spec.train.checkpoint_metric, spec),
        save_top_k=spec.train.save_top_k,
        save_last=True,  # `--resume` continues from last.ckpt
    )


def strategy_for(hw):
    """The profile's strategy. FSDP shards each processor block as its own unit (the encoder, conditioning and
    decoder form the root unit) and saves full, unsharded state dicts, so a checkpoint trained on 4 GPUs loads into
    one device's model for promote, eval and export."""
    if hw.strategy != "fsdp":
        return hw.strategy
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp.wrap import CustomPolicy

    # a model's blocks say they are shard units (`fsdp_unit = True`: the built-ins' processor, spectral and
    # residual blocks); a model without any is one unit
    policy = CustomPolicy(lambda m: bool(getattr(m, "fsdp_unit", False)))
    return FSDPStrategy(auto_wrap_policy=policy, state_dict_type="full", sharding_strategy="FULL_SHARD")


def build_trainer(
    spec: Spec,
    *,
    run_dir: Path,
    loggers: list,
    progress_bar: bool = True,
    callbacks: list | None = None,
) -> tuple[L.Trainer, ModelCheckpoint]:
    hw, t = spec.hardware, spec.train
    if hw.num_threads is not None:
        torch.set_num_threads(hw.num_threads)
    ckpt = checkpoint_callback(spec, run_dir)
    callbacks = [ckpt, *(callbacks or [])]
    if progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if t.early_stopping.metric is not None:
        callbacks.append(
            EarlyStopping(
                monitor=t.early_stopping.metric,
                mode=mode(t.early_stopping.metric, spec),
                patience=t.early_stopping.patience,
                min_delta=t.early_stopping.min_delta,
                check_finite=True,
            )
        )
    trainer = L.Trainer(
        accelerator=hw.accelerator,
        devices=hw.devices,
        num_nodes=hw.num_nodes,
        strategy=strategy_for(hw),
        precision=hw.precision,
        max_epochs=t.max_epochs,
        limit_train_batches=t.batches_per_epoch,
        max_time={"minutes": t.max_time_minutes} if t.max_time_minutes else None,
        gradient_clip_val=t.grad_clip,
        accumulate_grad_batches=t.accumulate_grad_batches,
        check_val_every_n_epoch=t.val_every_n_epochs,
        log_every_n_steps=t.log_every_n_steps,
        deterministic=t.deterministic,
        logger=loggers or False,
        callbacks=callbacks,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # our samplers shard by rank themselves (ups.data.datamodule)
        default_root_dir=str(run_dir),
    )
    return trainer, ckpt
