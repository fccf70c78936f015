"""Optuna plumbing for sweeps: storages (with heartbeat), samplers, pruners, and finding/creating the study.

A study is identified by its name; its user attributes record what makes its trials comparable
(`ups.comparable_hash`), the base name it was made for, and the MLflow parent run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from ups.spec.errors import SpecError
from ups.spec.load import ResolvedSpec
from ups.spec.metrics import direction, sweep_direction
from ups.spec.redact import redact
from ups.spec.schema import DEFAULTS_EPOCH, SweepConfig
from ups.tracking.store import normalize_url

log = logging.getLogger(__name__)

# Changing these does not make earlier trials incomparable.
_NOT_COMPARED = {
    ("sweep", "trials"),
    ("sweep", "max_failures"),
    ("sweep", "storage"),
    ("sweep", "heartbeat_seconds"),
    ("sweep", "grace_seconds"),
    ("sweep", "max_retries"),
    ("sweep", "trial_plots"),
    ("tracking",),
    ("hardware",),
}


def comparable_hash(resolved: ResolvedSpec) -> str:
    """Hash of everything that decides what a trial measures: the spec (minus budget/tracking/hardware) and the space."""
    data = resolved.non_default_dict()  # a key added later, at its default, leaves the hash unchanged
    for path in _NOT_COMPARED:
        node = data
        for part in path[:-1]:
            node = node.get(part, {})
        node.pop(path[-1], None)
    space = resolved.search_space_file.read_text() if resolved.search_space_file else ""
    blob = json.dumps({"defaults": DEFAULTS_EPOCH, "spec": data, "space": space}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_storage(home: Path) -> str:
    return f"sqlite:///{home / 'optuna.db'}"


def make_storage(
    url: str, cfg: SweepConfig, *, key: str | None = "sweep.storage", create: bool = True
) -> optuna.storages.BaseStorage:
    """RDB storages get a heartbeat, so a killed worker's trial is failed and retried; `journal:PATH` has none.

    `key` names where the URL came from (`--storage`, `$UPS_SWEEP_STORAGE`, `sweep.storage`) in errors. A server
    that does not answer is waited for (bounded: ups.tracking.store), then StoreUnavailable. Without `create` (a
    read-only command) a storage file that does not exist is an error, not a new empty file. The first use of a
    sqlite file creates its tables under a lock beside it."""
    from ups.tracking.store import require_file, schema_lock, sqlite_path, wait_for

    where = {"file": "command line"} if key and key.startswith("-") else {}
    if url.startswith("journal:"):
        from optuna.storages import journal

        path = url.split(":", 1)[1]
        if not create and not Path(path).is_file():
            raise SpecError(f"no Optuna journal at {path}", key=key, got=url, **where)
        return optuna.storages.JournalStorage(
            journal.JournalFileBackend(path, lock_obj=journal.JournalFileOpenLock(path))
        )
    url = normalize_url(url)
    if not create:
        require_file(url, what="Optuna storage", key=key)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    wait_for(url, what="Optuna storage", key=key)
    file = sqlite_path(url)
    try:
        with schema_lock(file) if file is not None else contextlib.nullcontext():
            return _rdb_storage(url, cfg)
    except ModuleNotFoundError as exc:
        raise SpecError(
            f"the storage needs a driver that is not installed ({exc.name})",
            key=key,
            got=redact(url),
            hint="pip install 'ups[postgres]' (psycopg 3) for postgresql:// URLs.",
            **where,
        ) from None
    except Exception as exc:  # a bad URL, a permission denied...
        raise SpecError(
            f"cannot open the Optuna storage ({exc.__class__.__name__})", key=key, got=redact(url), **where
        ) from None


def _rdb_storage(url: str, cfg: SweepConfig) -> optuna.storages.RDBStorage:
    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=cfg.heartbeat_seconds,
                grace_period=cfg.grace_seconds,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=cfg.max_retries
                ),
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
            )
        except ModuleNotFoundError:
            raise
        except Exception as exc:  # two coordinators creating a fresh database's tables at once: one loses
            if attempt == 3 or not _lost_a_schema_race(exc):
                raise
            log.debug("opening the Optuna storage failed (%s); retrying", exc.__class__.__name__)
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _lost_a_schema_race(exc: Exception) -> bool:
    from ups.tracking.store import lost_a_schema_race

    return lost_a_schema_race(exc)


def make_sampler(cfg: SweepConfig, *, seed: int, grid: dict[str, list] | None) -> optuna.samplers.BaseSampler:
    s = cfg.sampler
    if s == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.startup_trials)
    if s == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=cfg.startup_trials)
    if s == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=cfg.startup_trials)
    if s == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if s == "grid":
        assert grid is not None
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise AssertionError(s)


def make_pruner(cfg: SweepConfig, spec=None) -> optuna.pruners.BasePruner:
    p = cfg.pruner
    if p == "none":
        pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    elif p == "median":
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_epochs
        )
    elif p == "percentile":
        pruner = optuna.pruners.PercentilePruner(
            cfg.percentile, n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_epochs
        )
    elif p in ("hyperband", "successive_halving"):
        cls = optuna.pruners.HyperbandPruner if p == "hyperband" else optuna.pruners.SuccessiveHalvingPruner
        kw = {} if cfg.reduction_factor is None else {"reduction_factor": cfg.reduction_factor}
        pruner = cls(min_resource=max(1, cfg.warmup_epochs), **kw)
    elif p == "threshold":
        minimize = (cfg.direction or direction(cfg.metric, spec)) == "minimize"
        upper = cfg.threshold if minimize else None
        lower = None if minimize else cfg.threshold
        pruner = optuna.pruners.ThresholdPruner(upper=upper, lower=lower, n_warmup_steps=0)
    elif p == "wilcoxon":
        pruner = optuna.pruners.WilcoxonPruner(p_threshold=cfg.wilcoxon_p, n_startup_steps=0)
    else:
        raise AssertionError(p)
    if cfg.patience is not None and p != "none":
        pruner = optuna.pruners.PatientPruner(pruner, patience=cfg.patience)
    return pruner


def find_or_create_study(
    resolved: ResolvedSpec, storage: optuna.storages.BaseStorage, *, name: str | None, new_study: bool
) -> tuple[str, bool]:
    """The study to work on: the latest one made for this base name, or a new one. Returns (name, created)."""
    spec = resolved.spec
    base = name or spec.name
    wanted = comparable_hash(resolved)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    ours = [
        s
        for s in summaries
        if s.user_attrs.get("ups.base_name", s.study_name) == base or s.study_name == base
    ]
    ours.sort(key=lambda s: s.user_attrs.get("ups.created", 0))
    if ours and not new_study:
        current = ours[-1]
        have = current.user_attrs.get("ups.comparable_hash")
        if have != wanted:
            raise SpecError(
                f"study '{current.study_name}' was made from a different spec or search space "
                f"(its trials would not be comparable: hash {have} vs {wanted})",
                file=str(resolved.path),
                hint="Pass --new-study to start a fresh study (the old one is kept), or restore the old spec.",
            )
        return current.study_name, False
    taken = {s.study_name for s in summaries}
    study_name = base
    k = 2
    while study_name in taken:
        study_name = f"{base}-{k}"
        k += 1
    cfg = spec.sweep
    directions = list(cfg.directions) if cfg.objectives else [sweep_direction(spec)]
    try:
        study = optuna.create_study(study_name=study_name, storage=storage, directions=directions)
    except (
        optuna.exceptions.DuplicatedStudyError
    ):  # another coordinator created it at the same instant: join it
        log.info("study %s was created by another coordinator: joining it", study_name)
        return study_name, False
    study.set_user_attr("ups.base_name", base)
    study.set_user_attr("ups.comparable_hash", wanted)
    study.set_user_attr("ups.created", time.time())
    study.set_user_attr("ups.spec_file", str(resolved.path))
    study.set_user_attr("ups.objectives", list(cfg.objectives) or [cfg.metric])
    log.info("created study %s", study_name)
    return study_name, True


INTERRUPTED_ATTR = "interrupted"
"""User attribute of a trial stopped by Ctrl-C or SIGTERM (Optuna records it as FAIL; it is no failure)."""


def outcome(trial) -> str:
    """A trial's state as a user reads it: Optuna's, except that a FAIL is `interrupted` (a signal stopped it),
    `killed` (its worker died: the heartbeat went stale, so the objective never recorded why) or `fail`."""
    state = trial.state.name.lower()
    if state != "fail":
        return state
    if trial.user_attrs.get(INTERRUPTED_ATTR):
        return "interrupted"
    if "fail_reason" not in trial.user_attrs:
        return "killed"
    return "fail"


def counts_as_failure(trial) -> bool:
    """Toward `sweep.max_failures` count only trials that failed on their own: not interrupts, not kills."""
    return outcome(trial) == "fail"


def count_states(study: optuna.Study) -> dict[str, int]:
    counts = {s.name.lower(): 0 for s in optuna.trial.TrialState} | {"interrupted": 0, "killed": 0}
    for t in study.get_trials(deepcopy=False):
        counts[outcome(t)] += 1
    return counts


def retry_interrupted(study: optuna.Study) -> int:
    """Queue the parameters of each interrupted or killed trial not yet retried; returns how many were queued.

    (Optuna's own retry covers stale heartbeats on RDB storages; this covers interrupts, and journal storages.)
    """
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("ups.retry_of") for t in trials}
    retried |= {t.system_attrs.get("failed_trial") for t in trials}  # Optuna's heartbeat retries
    queued = 0
    for t in trials:
        if outcome(t) in ("interrupted", "killed") and t.number not in retried and t.params:
            study.enqueue_trial(t.params, user_attrs={"ups.retry_of": t.number}, skip_if_exists=False)
            queued += 1
    return queued


def describe(value: Any) -> str:
    return json.dumps(value, default=str)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def fail_dead_local_trials(study: optuna.Study) -> list[int]:
    """FAIL each RUNNING trial whose worker ran on this machine and whose process is gone (no need to wait for
    its heartbeat to go stale, so a restart within the grace period finds it). Returns their numbers.

    The trial keeps no `fail_reason`, so `outcome()` reads it as `killed`: not a failure, and retried."""
    host = socket.gethostname()
    dead = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        where, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if where == host and pid.isdigit() and not _alive(int(pid)):
            try:
                study._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL)
            except RuntimeError:  # it finished (or another worker failed it) in the meantime
                continue
            dead.append(t.number)
    if dead:
        log.info("trial(s) %s: their worker on this machine is dead; failed, to be retried", dead)
    return dead


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """The configured sampler, re-made with seed `seed + trial.number` for each trial.

    Trial numbers are unique within a study (the storage hands them out atomically), so no two workers, and no
    two coordinators on different machines, ever share a seed; one worker on a fresh study still replays the same
    sequence for the same `sweep.seed`. (The samplers keep no state between trials besides the study itself.)
    """

    def __init__(self, factory, seed: int) -> None:
        self._factory, self._seed = factory, seed
        self._number: int | None = None
        self._sampler = factory(seed)

    def _for(self, trial) -> optuna.samplers.BaseSampler:
        if trial.number != self._number:
            self._number, self._sampler = trial.number, self._factory(self._seed + trial.number)
        return self._sampler

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._for(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()
