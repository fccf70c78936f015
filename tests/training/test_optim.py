import pytest
import torch
from conftest import latent_operator

from ups.spec.schema import TrainConfig
from ups.training.optim import build_optimizer, build_scheduler, cosine_with_warmup


def _model():
    return latent_operator(
        points=16,
        patch_size=4,
        latent_dim=8,
        num_layers=1,
        num_modes=3,
        cond_dim=4,
        mlp_ratio=1,
        decoder_dim=4,
        decoder_kernel=3,
    )


def _loss(model):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(4, 1, 16, generator=g)
    return (model(u, torch.zeros(4, 1), torch.full((4,), 0.05)) - 0.5 * u).square().mean()


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "muon"])
def test_every_optimizer_reduces_the_loss(name):
    torch.manual_seed(0)
    model = _model()
    opt = build_optimizer(model, TrainConfig(optimizer=name, lr=3e-3))
    first = _loss(model).item()
    for _ in range(30):
        opt.zero_grad()
        loss = _loss(model)
        loss.backward()
        opt.step()
    assert _loss(model).item() < first


def test_muon_hybrid_routes_matrices_and_round_trips_state():
    model = _model()
    opt = build_optimizer(model, TrainConfig(optimizer="muon"))
    muon_params = {id(p) for g in opt.muon.param_groups for p in g["params"]}
    assert muon_params and all(p.ndim == 2 for p in model.parameters() if id(p) in muon_params)
    assert all(p.ndim != 2 for g in opt.adamw.param_groups for p in g["params"])
    _loss(model).backward()
    opt.step()
    state = opt.state_dict()
    fresh = build_optimizer(model, TrainConfig(optimizer="muon"))
    fresh.load_state_dict(state)
    assert fresh.state_dict()["inner"][1]["state"].keys() == state["inner"][1]["state"].keys()
    sched = build_scheduler(
        fresh,
        TrainConfig(optimizer="muon", scheduler="step", step_size=1, gamma=0.5),
        total_steps=10,
        monitor="m",
    )
    _loss(model).backward()
    fresh.step()
    sched["scheduler"].step()
    assert {g["lr"] for g in fresh.param_groups} == {0.0005}


def test_cosine_with_warmup_shape():
    f = lambda s: cosine_with_warmup(s, warmup=10, total=110, min_ratio=0.1)  # noqa: E731
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
