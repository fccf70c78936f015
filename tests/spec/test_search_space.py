"""Search spaces: checked when the spec loads, sampled with conditions."""

from pathlib import Path

import optuna
import pytest

from ups.spec import SpecError
from ups.spec.load import load_spec
from ups.spec.search_space import suggest

STEADY_METRICS = [
    "train.checkpoint_metric=val/nrmse",
    "registry.select_metric=val/nrmse",
    "sweep.metric=val/nrmse",
    "registry.gates.champion_metric=test/nrmse",
]

ROOT = Path(__file__).resolve().parents[2]
BURGERS = ROOT / "specs" / "burgers.yaml"


def _error(tmp_path, monkeypatch, text, overrides=()):
    (tmp_path / "s.yaml").write_text(text)
    monkeypatch.setenv("UPS_SEARCH_SPACES", str(tmp_path))
    with pytest.raises(SpecError) as info:
        load_spec(BURGERS, ["search_space=s", *overrides])
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "train.lr: {type: float, low: 3, high: 1}\n",
            "train.lr: `low <= high` must hold, got (low=3, high=1).",
        ),
        (
            "train.lr: {type: float, low: 0, high: 1, log: true}\n",
            "train.lr: `log: true` needs low > 0, got (low=0).",
        ),
        (
            "train.lrr: {type: float, low: 0.1, high: 1}\n",
            "train.lrr: not a spec key that can be searched; got 'train.lrr'.",
        ),
        ("train: {type: float, low: 0.1, high: 1}\n", "train: not a spec key that can be searched"),
        (
            "train.lr: {type: double, low: 0.1, high: 1}\n",
            "train.lr: `type` must be float, int or categorical; got 'double'.",
        ),
        (
            "train.lr: {type: float, low: 0.0, high: 0.1}\n",
            "train.lr: value 0.0 makes the spec invalid (must be > 0).",
        ),
        (
            "train.optimizer: {type: categorical, choices: [adamw, lion]}\n",
            "train.optimizer: value 'lion' makes the spec invalid",
        ),
        (
            "train.lr: {type: float, low: 0.1, high: 1, stepp: 2}\n",
            "train.lr.stepp: unknown field; got 'stepp'. Did you mean 'step'?",
        ),
        (
            "train.momentum: {type: float, low: 0.1, high: 0.9, when: {train.optimiser: sgd}}\n",
            "train.momentum.when: condition on an unknown key; got 'train.optimiser'.",
        ),
        (
            "train.batch_size: {type: int, low: 1.5, high: 4}\n",
            "train.batch_size: an int parameter needs integer bounds",
        ),
    ],
)
def test_bad_search_spaces_are_one_line_errors(tmp_path, monkeypatch, text, expected):
    message = _error(tmp_path, monkeypatch, text)
    assert str(tmp_path / "s.yaml") in message and expected in message


def test_grid_needs_steps_for_floats(tmp_path, monkeypatch):
    text = "train.lr: {type: float, low: 0.001, high: 0.01}\n"
    assert "the grid sampler needs a `step` for floats" in _error(
        tmp_path, monkeypatch, text, ["sweep.sampler=grid"]
    )


def test_multi_objective_with_pruning_is_refused():
    with pytest.raises(SpecError, match="pruning does not exist for multi-objective studies"):
        load_spec(
            BURGERS,
            ["sweep.objectives=[val/nrmse, model/num_params]", "sweep.directions=[minimize, minimize]"],
        )


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "search_spaces").glob("*.yaml")))
def test_every_shipped_search_space_loads(name):
    """A stage's search space is checked against that stage's schema (stage.num_steps exists for the refiner)."""
    stage = {
        "diffusion_residual": ["stage=diffusion_residual", "stage.from=RUN"],
        "consistency_distill": ["stage=consistency_distill", "stage.from=RUN"],
        "pde_refiner": ["stage=pde_refiner"],
        "steady_prior": ["stage=steady_prior", "data=steady_diffusion1d", *STEADY_METRICS],
    }.get(name, [])
    assert load_spec(BURGERS, [*stage, f"search_space={name}"]).search_space


def test_a_stage_key_is_searchable_only_for_its_stage():
    with pytest.raises(SpecError, match="stage.num_steps: not a spec key that can be searched"):
        load_spec(BURGERS, ["search_space=diffusion_residual"])


def test_conditional_parameters_follow_their_condition():
    space = load_spec(BURGERS, ["search_space=operator_tiny"]).search_space
    sgd = suggest(
        optuna.trial.FixedTrial({"train.lr": 1e-3, "train.optimizer": "sgd", "train.momentum": 0.9}),
        list(space),
        {},
    )
    adamw = suggest(optuna.trial.FixedTrial({"train.lr": 1e-3, "train.optimizer": "adamw"}), list(space), {})
    assert sgd == {"train.lr": 1e-3, "train.optimizer": "sgd", "train.momentum": 0.9}
    assert adamw == {"train.lr": 1e-3, "train.optimizer": "adamw"}


def test_reduction_factor_is_checked_and_reaches_the_pruner():
    with pytest.raises(SpecError, match=r"sweep.reduction_factor: must be >= 2 .*got 1"):
        load_spec(BURGERS, ["sweep.pruner=successive_halving", "sweep.reduction_factor=1"])
    from ups.sweep.study import make_pruner

    cfg = load_spec(BURGERS, ["sweep.pruner=successive_halving", "sweep.reduction_factor=3"]).spec.sweep
    assert make_pruner(cfg)._reduction_factor == 3
    cfg = load_spec(BURGERS, ["sweep.pruner=hyperband", "sweep.reduction_factor=5"]).spec.sweep
    assert make_pruner(cfg)._reduction_factor == 5
    default = load_spec(BURGERS, ["sweep.pruner=successive_halving"]).spec.sweep
    assert make_pruner(default)._reduction_factor == 4  # Optuna's own default
