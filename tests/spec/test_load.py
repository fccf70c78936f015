"""Spec composition and the one-line errors users see (messages are part of the contract)."""

from pathlib import Path

import pytest

from ups.spec import SpecError
from ups.spec.load import load_experiment, load_spec
from ups.spec.paths import ConfigPath

ROOT = Path(__file__).resolve().parents[2]
BURGERS = ROOT / "specs" / "burgers.yaml"


def error_of(path, overrides=()) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_precedence_schema_block_spec_override(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: t\ndata: {from: burgers1d, num_trajectories: 64}\nmodel: operator_tiny\ntrain: {lr: 0.002}\n"
    )
    r = load_spec(spec, ["train.lr=0.003", "data.split_seed=7"])
    assert r.spec.train.lr == 0.003  # override beats spec
    assert r.spec.data.num_trajectories == 64  # spec inline beats block
    assert r.spec.data.nu == 0.01  # block beats schema default (None)
    assert r.spec.data.split_seed == 7
    assert r.spec.train.batch_size == 32  # schema default
    assert r.blocks == {
        "stage": "operator",
        "data": "burgers1d",
        "model": "operator_tiny",
        "hardware": "cpu",
        "tracking": "local",
    }


def test_block_swap_on_command_line():
    r = load_spec(BURGERS, ["model=operator_tiny", "tracking=none"])
    assert r.spec.model.latent_dim == 16
    assert r.spec.tracking.mlflow.enabled is False


def test_fingerprint_tracks_every_value():
    a = load_spec(BURGERS).fingerprint()
    assert a == load_spec(BURGERS).fingerprint()
    assert a != load_spec(BURGERS, ["train.lr=0.002"]).fingerprint()


def test_show_yaml_is_loadable_and_redacted(tmp_path):
    r = load_spec(BURGERS, ["tracking.mlflow.uri=postgresql://me:hunter2@db:5432/mlflow"])
    text = r.to_yaml()
    assert "hunter2" not in text and "me:***@db" in text


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.lrr=1"], "command line: train.lrr: unknown key. Did you mean 'lr'?"),
        (
            ["train.optimizer=adamx"],
            "command line: train.optimizer: not one of the choices; got 'adamx'. Did you mean 'adam'?",
        ),
        (["train.lr=abc"], "command line: train.lr: wrong type, expected a float; got 'abc'."),
        (["train.lr=0"], "command line: train.lr: must be > 0; got 0."),
        (["train.max_epochs=0"], "command line: train.max_epochs: must be >= 1; got 0."),
        (
            ["train.max_epochs=2", "train.val_every_n_epochs=3"],
            "command line: train.val_every_n_epochs: must be <= train.max_epochs (2): the run would never validate, "
            "so no checkpoint is chosen; got 3.",
        ),
        (["train.batch_size=0"], "command line: train.batch_size: must be >= 1; got 0."),
        (
            ["train.unroll_grad_steps=0"],
            "command line: train.unroll_grad_steps: must be >= 1 (or null: every step); got 0.",
        ),
        (["eval.horizon=0"], "command line: eval.horizon: must be >= 1; got 0."),
        (
            ["eval.horizon=40"],
            "command line: eval.horizon: context_frames + horizon must be <= data.num_frames (41); got 50.",
        ),
        (
            ["model=operator_smal"],
            "burgers.yaml: model: unknown model block; got 'operator_smal'. Did you mean 'operator_small'?",
        ),
        (["data.path=/no/such.h5"], "command line: data.path: file not found; got '/no/such.h5'."),
        (
            ["train.checkpoint_metric=test/nrmse"],
            "command line: train.checkpoint_metric: not a metric the `operator` stage produces; got 'test/nrmse'. The test split never selects",
        ),
        (
            ["train.early_stopping.metric=val/rmse"],
            "command line: train.early_stopping.metric: not a metric the `operator` stage produces; got 'val/rmse'. Did you mean 'val/nrmse'?",
        ),
        (["train=3"], "command line: train: wrong type, expected a mapping; got 3."),
        (
            ["hardware=cpu_ddp2", "hardware.strategy=fsdp"],
            "command line: hardware.strategy: FSDP requires GPUs",
        ),
        (
            ["hardware=cpu_ddp2", "train.batch_size=33"],
            "command line: train.batch_size: the global batch must split evenly over 2 device(s) x 1 node(s) x 1 "
            "accumulation step(s) = 2 micro-batches; got 33. Use a multiple of 2.",
        ),
        (
            ["hardware=4gpu_fsdp", "hardware.devices=1"],
            "hardware.strategy: FSDP shards over at least 2 devices; got '1 device(s) x 1 node(s)'.",
        ),
        (
            ["stage=diffusion_residual", "stage.from=0123456789abcdef", "stage.refiner_input=noise"],
            "command line: stage.refiner_input: must be `residual` or `state`; got 'noise'.",
        ),
        (["lr"], "command line: an override must look like key=value; got 'lr'."),
    ],
)
def test_bad_values_name_source_key_and_fix(overrides, expected):
    assert expected in error_of(BURGERS, overrides)


def test_error_points_at_the_file_that_set_the_value(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\ndata: burgers1d\nmodel: operator_tiny\ntrain: {lr: -1}\n")
    assert error_of(spec).startswith(f"{spec}: train.lr: must be > 0; got -1.")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "must be a YAML mapping of keys to values; got 'list'."),
        ("name: [\n", "not valid YAML"),
        (
            "name: t\ndata: burgers1d\n",
            "model: missing required value. Name a model block: fno_small, operator_mid, operator_small, operator_tiny, unet_small",
        ),
        ("data: burgers1d\nmodel: operator_tiny\n", "name: missing required value."),
        (
            "name: t\ndata: burgers1d\nmodel: operator_tiny\nstage: diffusion\n",
            "stage: unknown stage block; got 'diffusion'.",
        ),
        ("name: t\ndata: burgers1d\nmodel: operator_tiny\nsearch: {}\n", "search: unknown key."),
    ],
)
def test_bad_files(tmp_path, text, expected):
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    assert expected in error_of(spec)


def test_missing_spec_file(tmp_path):
    assert error_of(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: file not found."


def test_unreadable_data_file(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    f = tmp_path / "d.h5"
    f.write_bytes(b"x")
    f.chmod(0)
    assert "data.path: file is not readable" in error_of(BURGERS, [f"data.path={f}"])


def _shipped_specs():
    return sorted((ROOT / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", _shipped_specs(), ids=lambda p: p.name)
def test_every_shipped_spec_validates(path):
    from ups.spec.load import ResolvedPipeline, load_experiment

    resolved = load_experiment(path)
    stages = resolved.stages if isinstance(resolved, ResolvedPipeline) else [resolved]
    assert all(r.spec.name for r in stages)


@pytest.mark.parametrize(
    ("group", "name"),
    [
        (g, n)
        for g in ("stage", "data", "model", "hardware", "tracking")
        for n in ConfigPath.for_spec(BURGERS).blocks(g)
    ],
)
def test_every_shipped_block_composes(group, name):
    overrides = [f"{group}={name}"]
    if group == "hardware" and name.endswith("fsdp"):
        overrides.append("hardware.accelerator=gpu")
    if (group, name) in (("stage", "diffusion_residual"), ("stage", "consistency_distill")):
        overrides.append("stage.from=0123456789abcdef")  # a run id: checked when the run starts
    if (group, name) in (("stage", "steady_prior"), ("data", "steady_diffusion1d")):
        overrides = ["stage=steady_prior", "data=steady_diffusion1d", *STEADY_METRICS]
    assert (
        load_spec(BURGERS, overrides).spec.stage.kind == overrides[0].split("=")[1]
        if group == "stage"
        else True
    )


STEADY_METRICS = [
    "train.checkpoint_metric=val/nrmse",
    "registry.select_metric=val/nrmse",
    "sweep.metric=val/nrmse",
    "registry.gates.champion_metric=test/nrmse",
    "registry.gates.beat_persistence=false",
]


def test_docs_list_every_spec_key():
    from ups.spec.load import flatten_tree

    doc = (ROOT / "docs" / "specs.md").read_text()
    from ups.spec.errors import user_key

    keys = [user_key(k) for k in flatten_tree(load_spec(BURGERS).to_dict())]  # as users write them
    missing = [k for k in keys if f"`{k}`" not in doc]
    assert not missing, f"docs/specs.md does not document {missing}"


def test_schema_defaults_are_pinned_so_spec_hashes_stay_honest():
    """Spec hashes (`--resume`, a study's comparable hash) skip values at their defaults, so adding a key never
    breaks continuing a run or a study. The price: changing a default must change every hash. If this fails:
    - you only added keys (defaults that keep the old behaviour): update the pinned digest;
    - you changed what a default means: also bump `ups.spec.schema.DEFAULTS_EPOCH`."""
    import dataclasses
    import hashlib
    import json

    from ups.spec.schema import DEFAULTS_EPOCH, Spec

    blob = json.dumps(dataclasses.asdict(Spec(name="x")), sort_keys=True, default=str)
    # c0de3953acd1cfbf: the catalogue added data.format, data.options, eval.metrics and model.residual (defaults
    # that keep the old behaviour) and named the default model kind latent_operator (was operator: an alias);
    # 3cb9eb1444995df7: init.from (warm start; null keeps the old behaviour)
    assert (hashlib.sha256(blob.encode()).hexdigest()[:16], DEFAULTS_EPOCH) == ("3cb9eb1444995df7", 2)


def test_a_key_at_its_default_does_not_enter_the_spec_hash():
    base = load_spec(BURGERS)
    assert load_spec(BURGERS, ["sweep.reduction_factor=null"]).fingerprint() == base.fingerprint()
    assert load_spec(BURGERS, ["train.lr=0.001"]).fingerprint() == base.fingerprint()  # the default lr
    assert load_spec(BURGERS, ["sweep.reduction_factor=3"]).fingerprint() != base.fingerprint()
    assert load_spec(BURGERS, ["train.lr=0.002"]).fingerprint() != base.fingerprint()


def test_a_trial_spec_is_frozen_from_the_study_spec_not_reread_from_disk(tmp_path):
    from ups.spec.load import with_values

    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\ndata: {from: burgers1d, num_trajectories: 64}\nmodel: operator_tiny\n")
    resolved = load_spec(spec)
    spec.write_text("name: edited\ndata: {from: burgers1d, num_trajectories: 999}\nmodel: operator_small\n")
    trial = with_values(resolved, {"train.lr": 0.004, "model.latent_dim": 48})
    assert (trial.spec.name, trial.spec.data.num_trajectories) == ("t", 64)  # the edit is not seen
    assert (trial.spec.train.lr, trial.spec.model.latent_dim) == (0.004, 48)
    assert resolved.spec.train.lr != 0.004  # the study's spec is untouched
    assert trial.fingerprint() != resolved.fingerprint()
    with pytest.raises(SpecError, match="train.lr"):
        with_values(resolved, {"train.lr": -1.0})


def test_a_pipeline_stage_names_its_own_warm_start(tmp_path):
    spec = tmp_path / "pipe.yaml"
    body = """name: pinit
data: {from: ks1d, num_trajectories: 16}
model: operator_tiny
stages:
  - {kind: operator, init: {from: /somewhere/op.ckpt}}
  - {name: refiner, kind: diffusion_residual}
"""
    spec.write_text(body)
    first, second = load_experiment(spec).stages
    assert first.spec.init.source == "/somewhere/op.ckpt" and second.spec.init.source is None
    _, second = load_experiment(spec, ["stages.refiner.init.from=models:/ks@champion"]).stages
    assert second.spec.init.source == "models:/ks@champion"

    with pytest.raises(SpecError, match="name the stage") as refused:
        load_experiment(spec, ["init.from=abc"])
    assert "stages.operator.init.from" in refused.value.render()
    spec.write_text(body + "init: {from: abc}\n")
    with pytest.raises(SpecError, match="give `init` inside the stage it starts") as refused:
        load_experiment(spec)
    assert refused.value.render().startswith(f"{spec}: init:")
