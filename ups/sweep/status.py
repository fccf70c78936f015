"""`ups-exp status`: the study's trials table and its best trial."""

from __future__ import annotations

from typing import Any

from ups.spec.errors import SpecError
from ups.spec.load import ResolvedSpec
from ups.spec.redact import redact
from ups.tracking import workspace


def study_status(
    resolved: ResolvedSpec, *, storage: str | None = None, study: str | None = None
) -> dict[str, Any]:
    import optuna

    from ups.sweep.driver import storage_key, storage_url
    from ups.sweep.parent import best_trials
    from ups.sweep.study import default_storage, make_storage, outcome

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    home = workspace.home(create=False)
    url = storage_url(storage, resolved.spec.sweep.storage, home)
    base = study or resolved.spec.name
    start = (
        f"Start one: ups-exp sweep {resolved.path}"
        if resolved.search_space is not None
        else "This spec names no search space, so it has no study: sweep a spec that sets `search_space:`."
    )
    no_study = SpecError("no study yet for this spec", file=str(resolved.path), got=base, hint=start)
    if url == default_storage(home) and not (home / "optuna.db").is_file():
        raise no_study  # read-only: the workspace's default storage is not created by asking
    store = make_storage(
        url, resolved.spec.sweep, key=storage_key(storage, resolved.spec.sweep.storage), create=False
    )
    ours = [
        s
        for s in optuna.get_all_study_summaries(store, include_best_trial=False)
        if s.user_attrs.get("ups.base_name") == base or s.study_name == base
    ]
    if not ours:
        raise no_study
    name = max(ours, key=lambda s: s.user_attrs.get("ups.created", 0)).study_name
    st = optuna.load_study(study_name=name, storage=store)
    rows = []
    for t in st.get_trials(deepcopy=False):
        duration = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append(
            {
                "number": t.number,
                "state": outcome(t).upper(),
                "value": (t.values if t.values and len(t.values) > 1 else t.value),
                "params": t.params,
                "duration_s": duration,
                "reason": t.user_attrs.get("fail_reason")
                or ("its worker died (stale heartbeat); retried" if outcome(t) == "killed" else ""),
                "run_id": t.user_attrs.get("mlflow_run_id"),
            }
        )
    return {"study": name, "storage": redact(url), "trials": rows, "best": best_trials(st)}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return " ".join(f"{k.split('.')[-1]}={_fmt(x)}" for k, x in v.items())
    return str(v)


def status_table(status: dict[str, Any]) -> str:
    head = ("#", "state", "value", "duration", "params", "reason")
    rows = [head] + [
        (
            str(r["number"]),
            r["state"],
            _fmt(r["value"]),
            _fmt(r["duration_s"]) + ("s" if r["duration_s"] else ""),
            _fmt(r["params"]),
            r["reason"][:60],
        )
        for r in status["trials"]
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"study {status['study']} in {status['storage']}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    best = status["best"]
    if isinstance(best, dict):
        lines.append(
            f"best: trial {best['number']} value {_fmt(best['value'])} params {_fmt(best['params'])} run {best['run_id']}"
        )
    elif isinstance(best, list):
        lines.append(f"Pareto front: trials {[b['number'] for b in best]}")
    else:
        lines.append("best: no completed trial yet")
    return "\n".join(lines)
