"""`hardware.oom`: what training does when a step runs out of memory.

- `fail` (default): the run ends FAILED (a sweep trial's reason is `oom`).
- `skip_batch`: the step is skipped (no parameter or optimizer-state change) and training goes on; more than
  `MAX_CONSECUTIVE_SKIPS` skips in a row end the run.
- `halve_batch`: the step is skipped, then the micro-batch halves and gradient accumulation doubles, so the global
  batch (`train.batch_size`) and the optimizer steps per epoch stay as they were. An OOM at a micro-batch of 1 ends
  the run.

An OOM is recoverable in the forward pass (`training_step`) on any number of ranks, and in the backward pass of a
single process. Under DDP each rank's OOM flag is all-reduced before the backward pass (one 2-float all-reduce per
training batch, whatever the policy), so all ranks skip, halve or fail together (with `fail`, every rank stops with
the reason `out of memory`, not with a lost peer). A backward pass holds collectives: an OOM there is fatal under
DDP. A skipped step still runs a backward pass of a zero loss (DDP needs every rank to reduce) and then leaves every
gradient empty, so the optimizer changes nothing.

`UPS_SIMULATE_OOM` drives the tests: comma-separated `above=N` (a micro-batch of more than N samples runs out of
memory, every time), `at=K` (the K-th training batch of the process does, once; from 0), `rank=R` (only rank R).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from ups.data.batches import MicroBatches

log = logging.getLogger(__name__)

SIMULATE_ENV = "UPS_SIMULATE_OOM"
MAX_CONSECUTIVE_SKIPS = 20


class OutOfMemory(RuntimeError):
    """A training step ran out of memory and `hardware.oom` could not (or may not) recover."""


def is_oom(exc: BaseException) -> bool:
    """torch's CUDA/accelerator OOM, or the CPU allocator's."""
    if isinstance(exc, torch.OutOfMemoryError | OutOfMemory):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@dataclass
class Simulation:
    above: int | None = None
    at: int | None = None
    rank: int | None = None

    @classmethod
    def from_env(cls) -> Simulation | None:
        text = os.environ.get(SIMULATE_ENV, "").strip()
        if not text:
            return None
        fields = {}
        for item in text.split(","):
            key, _, value = item.partition("=")
            if key.strip() not in ("above", "at", "rank") or not value.strip().isdigit():
                raise ValueError(f"{SIMULATE_ENV}={text!r}: expected comma-separated above=N, at=K, rank=R")
            fields[key.strip()] = int(value)
        return cls(**fields)

    def check(self, size: int, batch: int, rank: int) -> None:
        if self.rank is not None and rank != self.rank:
            return
        if (self.above is not None and size > self.above) or batch == self.at:
            raise torch.OutOfMemoryError(f"simulated out of memory ({SIMULATE_ENV}): micro-batch of {size}")


class OOMGuard:
    """Runs a module's training step under the policy; see the module docstring."""

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.simulation = Simulation.from_env()
        self.batches = 0
        self.events = 0
        self.consecutive = 0
        self.skip_step = False
        self.micro: int | None = None

    @staticmethod
    def agrees(module) -> bool:
        """Whether ranks agree on each OOM by an all-reduce: under DDP, not under FSDP (its forward pass holds
        all-gathers a failed rank would never join; checks refuse recovering policies with FSDP)."""
        return module.trainer.world_size > 1 and module.spec.hardware.strategy != "fsdp"

    @property
    def active(self) -> bool:
        return self.policy != "fail" or self.simulation is not None

    def step(self, module, batch, batch_idx: int):
        size = len(batch[0])
        self.micro = self.micro or size
        stale = size > self.micro  # prefetched before the micro-batch halved
        failed = False
        loss = None
        try:
            if not stale:
                if self.simulation is not None:
                    self.simulation.check(size, self.batches, module.global_rank)
                loss = module.step_loss(batch, batch_idx)
        except Exception as exc:
            if not is_oom(exc):
                raise
            failed = True
            if self.policy == "fail" and not self.agrees(module):
                raise OutOfMemory(f"out of memory in the training step (hardware.oom=fail): {exc}") from exc
        finally:
            self.batches += 1
        mine = failed
        if self.agrees(module):  # every rank takes the same decision, `fail` included
            flags = torch.tensor([float(failed), float(stale)], device=module.device)
            flags = module.trainer.strategy.reduce(flags, reduce_op="max")
            failed, stale = bool(flags[0] > 0), bool(flags[1] > 0)
        if failed and self.policy == "fail":  # every rank stops with the reason, not with a lost peer
            where = f"rank {module.global_rank}" if mine else "another rank"
            raise OutOfMemory(f"out of memory in the training step on {where} (hardware.oom=fail)")
        if stale and not failed:
            return self._skip(module, None)
        if not failed:
            self.consecutive = 0
            return loss
        return self._skip(module, self._recover(module, size))

    def backward_failed(self, module, exc: BaseException) -> None:
        """An OOM in the backward pass: recoverable in one process only (under DDP it may be inside a collective)."""
        if self.policy == "fail" or module.trainer.world_size > 1:
            raise OutOfMemory(
                f"out of memory in the backward pass (hardware.oom={self.policy}): {exc}"
            ) from exc
        self.skip_step = True
        self._recover(module, self.micro or 1)

    def _recover(self, module, size: int) -> str:
        self.events += 1
        if self.policy == "skip_batch":
            self.consecutive += 1
            if self.consecutive > MAX_CONSECUTIVE_SKIPS:
                raise OutOfMemory(
                    f"out of memory in {self.consecutive} training steps in a row (hardware.oom=skip_batch)"
                )
            log.warning(
                "out of memory at training batch %d: step skipped (hardware.oom=skip_batch)", self.batches - 1
            )
            return "skipped"
        trainer = module.trainer
        sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
        if self.micro <= 1 or not isinstance(sampler, MicroBatches):
            raise OutOfMemory(f"out of memory at a micro-batch of {self.micro} (hardware.oom=halve_batch)")
        if self.micro % 2:
            raise OutOfMemory(
                f"out of memory at a micro-batch of {self.micro}: an odd micro-batch cannot halve and keep the "
                "global batch (hardware.oom=halve_batch; use a train.batch_size with more factors of 2)"
            )
        self.micro //= 2
        sampler.size = self.micro
        trainer.accumulate_grad_batches *= 2
        _double_epoch(trainer)
        log.warning(
            "out of memory at a micro-batch of %d: micro-batch %d, gradient accumulation %d from now on "
            "(hardware.oom=halve_batch; the global batch is kept)",
            size,
            self.micro,
            trainer.accumulate_grad_batches,
        )
        return "halved"

    def _skip(self, module, _why) -> torch.Tensor:
        """A zero loss through every trained parameter (DDP reduces on every rank), and no optimizer change."""
        self.skip_step = True
        trained = [p for p in module.parameters() if p.requires_grad]
        return sum(p.sum() for p in trained) * 0.0

    def after_closure(self, module) -> bool:
        """Called between the backward pass and the optimizer step: a skipped step leaves no gradient. Returns
        whether the step was skipped."""
        if not self.skip_step:
            return False
        self.skip_step = False
        for p in module.parameters():
            p.grad = None
        return True


def _double_epoch(trainer) -> None:
    """Twice the micro-batches per epoch (each half the size), so the optimizer steps per epoch stay the same.
    Lightning (2.5–2.6) fixes the epoch's length when training starts; these are the places that hold it."""
    from lightning.fabric.utilities.data import sized_len

    fit = trainer.fit_loop
    loader = fit._combined_loader
    if loader is None:
        return
    if loader.limits is not None:  # `limit_train_batches` (train.batches_per_epoch), or the loader's length
        loader.limits = [limit * 2 for limit in loader.limits]
        if loader._iterator is not None:  # the running epoch's
            loader._iterator.limits = loader.limits
    length = sized_len(loader)
    fit.max_batches = length if length is not None else float("inf")
    if length is not None and trainer.val_check_interval == 1.0:  # validate once per epoch, not per old epoch
        trainer.val_check_batch = length
    if fit._data_fetcher is not None:
        fit._data_fetcher.length = length
