"""Every shipped spec keeps its fingerprint across versions of ups: a run started before resumes, a finished
pipeline stage is skipped, a study continues (its comparable hash). Pinned when the catalogue replaced the model,
family and stage tables (the values are those of commit 3fddff4)."""

from pathlib import Path

import pytest

from ups.spec.load import ResolvedPipeline, load_experiment
from ups.sweep.study import comparable_hash

ROOT = Path(__file__).resolve().parents[2]
PINNED = {
    "burgers.yaml": ("fc8576c7067f805c", None),
    "burgers_sweep.yaml": ("b3f5553da02798c6", "e2d67cfec4ea4a26"),
    "ks.yaml": ("74857321f90c5438", None),
    "ks_pipeline.yaml": (["06726e6d67f4e480", "1ef80ccdb4f9cd18", "473f72d6917a56a5"], None),
    "pdebench_multitask.yaml": ("2e695c779a723b24", None),
    "steady.yaml": ("8d56100dc7c949c6", "e6ce92313d3f9962"),
    "smoke.yaml": ("2609d3a9500db3cf", None),  # added after the catalogue
    "ns2d.yaml": ("2f69e9d6835e4322", None),  # the 2D flagships, added with 2D data
    "darcy2d.yaml": ("ea490093e2fb4633", None),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_specs_keep_their_fingerprints(name):
    resolved = load_experiment(ROOT / "specs" / name)
    fingerprint, comparable = PINNED[name]
    if isinstance(resolved, ResolvedPipeline):
        assert [s.fingerprint() for s in resolved.stages] == fingerprint
        return
    assert resolved.fingerprint() == fingerprint
    assert (comparable_hash(resolved) if resolved.search_space is not None else None) == comparable


def _test_size(d) -> int:
    from ups.data.splits import assign_splits

    return len(
        assign_splits(
            d.num_trajectories,
            split_seed=d.split_seed,
            val_fraction=d.val_fraction,
            test_fraction=d.test_fraction,
        )["test"]
    )


def test_the_2d_flagships_keep_their_physics():
    """A cheaper setting cannot pass in the flagships' place: ν, Δt, grid, burn-in, horizon and test size pinned."""
    ns = load_experiment(ROOT / "specs" / "ns2d.yaml").spec
    d = ns.data
    assert (d.family, d.nu, d.dt, d.num_points, d.num_frames) == ("ns2d", 1.0e-3, 1.0, 64, 21)
    assert (d.generator.solver_points, d.generator.burn_in) == (64, 30.0)
    assert (ns.eval.context_frames, ns.eval.horizon) == (1, 10)
    assert d.num_trajectories >= 256 and _test_size(d) >= 64
    darcy = load_experiment(ROOT / "specs" / "darcy2d.yaml").spec
    d = darcy.data
    assert (darcy.stage.kind, d.family, d.num_points, d.generator.solver_points) == (
        "steady_prior",
        "darcy2d",
        64,
        64,
    )
    assert _test_size(d) >= 100
