"""The pruning replay that benchmarks/pruning_replay.py uses to compare pruners on recorded curves."""

import importlib.util
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("pruning_replay", ROOT / "benchmarks" / "pruning_replay.py")
replay = importlib.util.module_from_spec(spec)
spec.loader.exec_module(replay)

GOOD = [0.5, 0.4, 0.3, 0.2]
BAD = [0.9, 0.9, 0.9, 0.9]
BEST = [0.5, 0.4, 0.3, 0.19]


def test_replay_charges_pruned_trials_their_epochs():
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    ended = replay.replay_sweep([GOOD, BAD, BEST], pruner)
    assert ended == [(True, 0.2, 4), (False, 0.9, 1), (True, 0.19, 4)]


def test_ratio_counts_epochs_to_the_first_trial_near_the_unpruned_best():
    curves = [GOOD, BAD, BAD, BAD, BAD, BEST]
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    # unpruned: 6 trials x 4 epochs to reach 0.19; pruned: 4 + 4 x 1 + 4 epochs
    assert replay.ratio(curves, 6, pruner, 0.02) == (24 / 12, True)
    # a pruner that stops every trial in its last epoch never reaches the target: the ratio is only a bound
    late = optuna.pruners.ThresholdPruner(upper=0.15, n_warmup_steps=3)
    assert replay.ratio(curves, 6, late, 0.02) == (1.0, False)
