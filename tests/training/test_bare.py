"""The plain-PyTorch loop against `ups-exp run`'s Lightning loop: same losses step by step and same weights, and
checkpoints that move training between the two in both directions."""

from __future__ import annotations

import copy
import dataclasses

import lightning.pytorch as L
import pytest
import torch

from tests.conftest import write_tiny_spec
from ups.data.datamodule import PDEDataModule
from ups.data.source import load_sources
from ups.spec.load import load_spec
from ups.training.bare import BareLoop
from ups.training.operator_module import OperatorModule
from ups.training.trainer import build_trainer

EPOCHS, BATCHES = 4, 3
TOL = 1e-6
"""Relative tolerance on losses and weights. CPU fp32 with deterministic kernels: the two loops run the same
operations in the same order, so they agree to rounding (measured max relative difference: 0)."""


class Losses(L.Callback):
    def __init__(self, save_after_epoch: int | None = None, path=None) -> None:
        self.losses: list[float] = []
        self.save_after_epoch, self.path = save_after_epoch, path

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].item())

    def on_train_epoch_end(self, trainer, module) -> None:
        if trainer.current_epoch == self.save_after_epoch:
            trainer.save_checkpoint(self.path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bare")
    path = write_tiny_spec(folder, epochs=EPOCHS)
    overrides = [
        f"train.batches_per_epoch={BATCHES}",
        "train.batch_size=8",
        "train.scheduler=cosine",
        "train.grad_clip=0.5",
        "tracking=none",
    ]
    spec = load_spec(path, overrides).spec
    sources = load_sources(spec.data, folder / "home")
    return spec, sources, folder


def _module(spec, sources):
    L.seed_everything(spec.seed, verbose=False)
    dm = PDEDataModule(spec, sources)
    meta = {"families": [s.family for s in sources]}
    module = OperatorModule(dataclasses.asdict(spec), [], list(dm.layout), dataclasses.asdict(dm.io), meta)
    module.setup_data(dm)
    return module, dm


def _lightning(spec, sources, folder, *, callback, ckpt_path=None):
    module, dm = _module(spec, sources)
    trainer, _ = build_trainer(spec, run_dir=folder, loggers=[], progress_bar=False, callbacks=[callback])
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module.model


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=TOL, atol=1e-7, msg=k)


def test_bare_loop_matches_lightning_step_by_step(setup):
    spec, sources, folder = setup
    module, dm = _module(spec, sources)
    start = copy.deepcopy(module.model)
    initial = copy.deepcopy(start.state_dict())
    seen = Losses()
    trained = _lightning(spec, sources, folder / "a", callback=seen)
    bare = BareLoop.from_spec(spec, dm, model=start)
    losses = bare.train()
    assert len(losses) == len(seen.losses) == EPOCHS * BATCHES
    assert losses == pytest.approx(seen.losses, rel=TOL)
    after = bare.model.state_dict()
    assert sum(not torch.equal(initial[k], after[k]) for k in initial) > len(initial) // 2  # it trained
    assert bare.step == EPOCHS * BATCHES
    _assert_same_weights(bare.model, trained)


def test_pushforward_training_matches_between_the_loops(setup):
    """`train.unroll_grad_steps` reaches both loops (they share the loss): same losses and weights."""
    spec, sources, folder = setup
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, unroll_grad_steps=1))
    module, dm = _module(spec, sources)
    start = copy.deepcopy(module.model)
    seen = Losses()
    trained = _lightning(spec, sources, folder / "pushforward", callback=seen)
    bare = BareLoop.from_spec(spec, dm, model=start)
    assert bare.train() == pytest.approx(seen.losses, rel=TOL)
    _assert_same_weights(bare.model, trained)


def test_training_moves_between_the_loops_in_both_directions(setup, tmp_path):
    spec, sources, folder = setup
    whole = Losses(save_after_epoch=1, path=tmp_path / "lightning_e1.ckpt")
    reference = _lightning(spec, sources, tmp_path / "ref", callback=whole)
    tail = whole.losses[2 * BATCHES :]

    # Lightning's checkpoint after 2 epochs, continued in the bare loop
    module, dm = _module(spec, sources)
    bare = BareLoop.from_spec(spec, dm, model=module.model)
    bare.load_checkpoint(tmp_path / "lightning_e1.ckpt")
    assert (bare.epoch, bare.step) == (2, 2 * BATCHES)
    assert bare.train() == pytest.approx(tail, rel=TOL)
    _assert_same_weights(bare.model, reference)

    # the bare loop's checkpoint after 2 epochs, continued by Lightning
    module, dm = _module(spec, sources)
    first = BareLoop.from_spec(spec, dm, model=module.model)
    assert first.train(epochs=2) == pytest.approx(whole.losses[: 2 * BATCHES], rel=TOL)
    first.save_checkpoint(tmp_path / "bare_e1.ckpt")
    resumed = Losses()
    continued = _lightning(
        spec, sources, tmp_path / "c", callback=resumed, ckpt_path=tmp_path / "bare_e1.ckpt"
    )
    assert resumed.losses == pytest.approx(tail, rel=TOL)
    _assert_same_weights(continued, reference)


def test_what_the_bare_loop_does_not_do_is_refused(setup):
    spec, sources, _ = setup
    module, dm = _module(spec, sources)
    plateau = load_spec(write_tiny_spec(_tmp(setup)), ["train.scheduler=plateau", "tracking=none"]).spec
    with pytest.raises(ValueError, match="no `plateau` scheduler"):
        BareLoop.from_spec(plateau, dm, model=module.model)


def _tmp(setup):
    folder = setup[2] / "refused"
    folder.mkdir(exist_ok=True)
    return folder


def test_the_global_batch_is_split_into_micro_batches_without_changing_training(setup):
    """`train.batch_size` is the global batch of an optimizer step: with 2 accumulation steps each forward pass
    sees half of it, and the optimizer steps on the same windows, so training follows the 1-step run."""
    spec, sources, _ = setup
    accumulated = dataclasses.replace(
        spec,
        train=dataclasses.replace(spec.train, accumulate_grad_batches=2, batches_per_epoch=2 * BATCHES),
    )
    module, dm = _module(spec, sources)
    start = copy.deepcopy(module.model)
    whole = BareLoop.from_spec(spec, dm, model=module.model)
    losses = whole.train()
    dm_acc = PDEDataModule(accumulated, sources)
    assert dm.micro_batch_size() == 8 and dm_acc.micro_batch_size() == 4 and dm_acc.micro_batch_size(2) == 2
    split = BareLoop.from_spec(accumulated, dm_acc, model=start)
    assert next(iter(split.loader))[0].shape[0] == 4
    halves = split.train()
    assert split.step == whole.step == EPOCHS * BATCHES
    # each optimizer step's loss is the mean over its two half batches (the same windows, the same weights)
    paired = [(a + b) / 2 for a, b in zip(halves[::2], halves[1::2], strict=True)]
    assert paired == pytest.approx(losses, rel=1e-4)
    sa, sb = whole.model.state_dict(), split.model.state_dict()
    for k in sa:  # the same gradients summed in another order; Adam magnifies rounding where a gradient is ~0
        assert (sa[k] - sb[k]).norm() <= 1e-3 * sa[k].norm() + 1e-6, k
