"""Cross-field and range checks that the type system cannot express. Each failure names its key."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ups import catalog
from ups.plugin import ModelIO
from ups.spec.errors import SpecError, did_you_mean
from ups.spec.metrics import metric_names, plugin_metrics
from ups.spec.names import check_safe_name
from ups.spec.schema import Spec

Source = Callable[[str], str]


def _require(ok: bool, source: Source, key: str, problem: str, got: object, hint: str | None = None) -> None:
    if not ok:
        raise SpecError(problem, file=source(key), key=key, got=got, hint=hint)


def _check_metric(spec: Spec, source: Source, key: str, name: str) -> None:
    produced = metric_names(spec, "val")
    if name not in produced:
        hint = did_you_mean(name, produced)
        if name.startswith("test/"):
            hint = "The test split never selects or stops anything; use the `val/` metric. " + hint
        raise SpecError(
            f"not a metric the `{spec.stage.kind}` stage produces",
            file=source(key),
            key=key,
            got=name,
            hint=hint,
        )


def _family(src, prefix: str, source: Source) -> catalog.FamilyRow | None:
    """The catalogue row of a data set's family (None when it has none: a file whose reader decides)."""
    if src.family is None:
        return None
    try:
        return catalog.get("families", src.family)
    except catalog.CatalogError as exc:
        key = f"{prefix}family"
        raise SpecError(exc.problem, file=source(key), key=key, got=exc.got, hint=exc.hint) from None


def _check_source(src, prefix: str, spec: Spec, source: Source) -> None:
    """Checks of one data set (`data.` or `data.tasks.<i>.`)."""

    def req(ok: bool, field: str, problem: str, got: object, hint: str | None = None) -> None:
        _require(ok, source, f"{prefix}{field}", problem, got, hint)

    req(
        src.num_trajectories >= 3,
        "num_trajectories",
        "must be >= 3 (train, val and test need one each)",
        src.num_trajectories,
    )
    if src.num_points is not None:
        req(src.num_points >= 8, "num_points", "must be >= 8", src.num_points)
    if src.dt is not None:
        req(src.dt > 0, "dt", "must be > 0", src.dt)
    if src.num_frames is not None:
        req(src.num_frames >= 1, "num_frames", "must be >= 1", src.num_frames)
    for name in ("nu", "rho"):
        value = getattr(src, name)
        if value is not None:
            req(
                value > 0 if name == "nu" else value >= 0,
                name,
                "must be > 0" if name == "nu" else "must be >= 0",
                value,
            )
    for key in ("val_fraction", "test_fraction"):
        req(0 < getattr(src, key) < 1, key, "must be in (0, 1)", getattr(src, key))
    req(
        src.val_fraction + src.test_fraction < 1,
        "test_fraction",
        "val_fraction + test_fraction must be < 1 (train needs data)",
        src.val_fraction + src.test_fraction,
    )
    row = _family(src, prefix, source)
    if src.path is None:
        req(row is not None, "family", "no data: set a family to generate it, or a file (path)", src.family,
            f"Families: {', '.join(catalog.names('families'))}.")  # fmt: skip
        req(row.generator is not None, "path", f"the {row.name} family has no generator: give a data file",
            src.path)  # fmt: skip
        for name in row.requires:
            req(
                getattr(src, name, None) is not None,
                name,
                f"the {row.name} generator needs `{name}`",
                None,
                f"Set {prefix}{name} or {prefix}path.",
            )
        if src.num_points is not None:
            req(
                src.generator.solver_points % src.num_points == 0,
                "generator.solver_points",
                f"must be a multiple of {prefix}num_points ({src.num_points})",
                src.generator.solver_points,
            )
        for name in ("num_points", "dt", "num_frames"):
            req(getattr(src, name) is not None, name, "a generator needs it (null means a file's)", None)
    else:
        p = Path(src.path).expanduser()
        req(
            p.is_file(),
            "path",
            "file not found",
            src.path,
            "Give a data file, or remove data.path to generate data.",
        )
        req(os.access(p, os.R_OK), "path", "file is not readable", src.path)
        try:
            catalog.get("formats", src.format)
        except catalog.CatalogError as exc:
            raise SpecError(exc.problem, file=source(f"{prefix}format"), key=f"{prefix}format", got=exc.got,
                            hint=exc.hint) from None  # fmt: skip
    if row is not None and row.checks:
        catalog.load(row.checks)(src, prefix, lambda ok, key, problem, got, hint=None: _require(
            ok, source, key, problem, got, hint))  # fmt: skip
    e, t = spec.eval, spec.train
    if row is not None and src.num_points is not None:
        io = ModelIO(
            spatial_dims=row.spatial_dims,
            in_channels=len(row.channels),
            out_channels=len(row.channels),
            num_params=len(row.params),
            grid=(src.num_points,) * row.spatial_dims,
            channels=row.channels,
        )
        check = getattr(spec.model, "check", None)
        for field_name, problem in (check(io) if check else ()) or ():
            key = f"model.{field_name}"
            raise SpecError(problem, file=source(key), key=key)
    if row is not None and row.steady:
        return
    if src.train_frames is not None and src.num_frames is not None:
        req(
            t.unroll_steps < src.train_frames <= src.num_frames,
            "train_frames",
            f"must be in (train.unroll_steps, num_frames] = ({t.unroll_steps}, {src.num_frames}]",
            src.train_frames,
        )
    if src.num_frames is None:
        return  # a file's frames: checked when it is read
    frames = f"{prefix}num_frames ({src.num_frames})"
    _require(
        e.context_frames + e.horizon <= src.num_frames,
        source,
        "eval.horizon",
        f"context_frames + horizon must be <= {frames}",
        e.context_frames + e.horizon,
    )
    _require(
        t.unroll_steps < src.num_frames, source, "train.unroll_steps", f"must be < {frames}", t.unroll_steps
    )


def _check_data(spec: Spec, source: Source) -> None:
    d = spec.data
    if not d.tasks:
        _check_source(d, "data.", spec, source)
        return
    names = [t.name for t in d.tasks]
    for i, task in enumerate(d.tasks):
        prefix = f"data.tasks.{i}."
        _require(
            bool(task.name) and "/" not in task.name and task.name.strip() == task.name,
            source,
            f"{prefix}name",
            "must be a non-empty name without '/' or spaces at the ends",
            task.name,
        )
        _require(task.name not in names[:i], source, f"{prefix}name", "task names must be unique", task.name)
        _require(task.weight > 0, source, f"{prefix}weight", "must be > 0", task.weight)
        _require(
            task.num_points == d.tasks[0].num_points or task.path is not None or d.tasks[0].path is not None,
            source,
            f"{prefix}num_points",
            f"every task needs the model's grid ({d.tasks[0].num_points} points)",
            task.num_points,
        )
        _check_source(task, prefix, spec, source)


def _check_registry(spec: Spec, source: Source) -> None:
    r = spec.registry
    _check_metric(spec, source, "registry.select_metric", r.select_metric)
    test_metrics = metric_names(spec, "test")
    for name in r.gates.thresholds:
        if name not in test_metrics:
            hint = did_you_mean(name, test_metrics)
            if name.startswith("val/"):
                hint = "Gates judge the held-out test split. " + hint
            raise SpecError(
                "gates are on `test/` metrics the stage produces",
                file=source(f"registry.gates.thresholds.{name}"),
                key=f"registry.gates.thresholds.{name}",
                got=name,
                hint=hint,
            )
    g = r.gates
    if g.champion_metric not in test_metrics:
        raise SpecError(
            "must be a `test/` metric",
            file=source("registry.gates.champion_metric"),
            key="registry.gates.champion_metric",
            got=g.champion_metric,
            hint=did_you_mean(g.champion_metric, test_metrics),
        )
    _require(
        0 <= g.champion_margin < 1,
        source,
        "registry.gates.champion_margin",
        "must be in [0, 1)",
        g.champion_margin,
    )
    _require(
        0 < g.champion_p_value <= 1,
        source,
        "registry.gates.champion_p_value",
        "must be in (0, 1]",
        g.champion_p_value,
    )


def _check_stage(spec: Spec, source: Source) -> None:
    """The stage's own rules (its config's `check`), and steady data for a steady stage, trajectories otherwise."""
    st = spec.stage
    st.check(spec, lambda ok, key, problem, got, hint=None: _require(ok, source, key, problem, got, hint))
    row = catalog.get("stages", st.kind)
    for i, src in enumerate(spec.data.sources()):
        if src.family is None:
            continue  # a file's reader says what it holds: checked when it is read
        family = catalog.get("families", src.family)
        key = f"data.tasks.{i}.family" if spec.data.tasks else "data.family"
        _require(
            family.steady == row.steady,
            source,
            key,
            f"the {st.kind} stage needs {'steady' if row.steady else 'time-dependent'} data, and the "
            f"{family.name} family is {'steady' if family.steady else 'time-dependent'}",
            src.family,
            "Steady families: " + ", ".join(n for n, f in catalog.rows("families").items() if f.steady) + ".",
        )


def _check_metrics(spec: Spec, source: Source) -> None:
    """`eval.metrics`: each names a metric plugin (a catalogue name or "pkg.module:fn") not shadowing a built-in."""
    seen = []
    for i, name in enumerate(spec.eval.metrics):
        key = "eval.metrics"
        try:
            row = plugin_metrics(spec)[i]
        except catalog.CatalogError as exc:
            raise SpecError(exc.problem, file=source(key), key=key, got=exc.got, hint=exc.hint) from None
        _require(
            row.fn is not None, source, key, "is a built-in metric (always reported): list plugins only", name
        )
        _require(
            catalog.METRIC_NAME.fullmatch(row.name) is not None,
            source,
            key,
            "a metric's name must match [a-z][a-z0-9_]*",
            row.name,
        )
        _require(row.name not in seen, source, key, "named twice", row.name)
        seen.append(row.name)


def check_spec(spec: Spec, source: Source) -> None:
    """Raise `SpecError` for the first rule the resolved spec breaks."""
    t, e, h = spec.train, spec.eval, spec.hardware
    check_safe_name(spec.name, key="name", file=source("name"))
    if spec.registry.model_name is not None:
        check_safe_name(
            spec.registry.model_name, key="registry.model_name", file=source("registry.model_name")
        )
    g = t.unroll_grad_steps
    for key, ok, problem in (
        ("lr", t.lr > 0, "must be > 0"),
        ("max_epochs", t.max_epochs >= 1, "must be >= 1"),
        ("batch_size", t.batch_size >= 1, "must be >= 1"),
        ("unroll_steps", t.unroll_steps >= 1, "must be >= 1"),
        ("unroll_grad_steps", g is None or g >= 1, "must be >= 1 (or null: every step)"),
        ("weight_decay", t.weight_decay >= 0, "must be >= 0"),
        ("momentum", 0 <= t.momentum < 1, "must be in [0, 1)"),
        ("min_lr_ratio", 0 <= t.min_lr_ratio <= 1, "must be in [0, 1]"),
        ("gamma", 0 < t.gamma <= 1, "must be in (0, 1]"),
        ("step_size", t.step_size >= 1, "must be >= 1"),
        ("warmup_steps", t.warmup_steps >= 0, "must be >= 0"),
        ("accumulate_grad_batches", t.accumulate_grad_batches >= 1, "must be >= 1"),
        ("save_top_k", t.save_top_k >= 1, "must be >= 1"),
    ):
        _require(ok, source, f"train.{key}", problem, getattr(t, key))
    v = t.val_every_n_epochs
    _require(v >= 1, source, "train.val_every_n_epochs", "must be >= 1", v)
    never = f"must be <= train.max_epochs ({t.max_epochs}): the run would never validate, so no checkpoint is chosen"
    _require(v <= t.max_epochs, source, "train.val_every_n_epochs", never, v)
    _require(t.log_every_n_steps >= 1, source, "train.log_every_n_steps", "must be >= 1", t.log_every_n_steps)
    if t.grad_clip is not None:
        _require(t.grad_clip > 0, source, "train.grad_clip", "must be > 0 (or null to disable)", t.grad_clip)
    b = t.batches_per_epoch
    _require(b is None or b >= 1, source, "train.batches_per_epoch", "must be >= 1 (or null)", b)
    if t.max_time_minutes is not None:
        _require(
            t.max_time_minutes > 0,
            source,
            "train.max_time_minutes",
            "must be > 0 (or null)",
            t.max_time_minutes,
        )
    _require(
        t.early_stopping.patience >= 1,
        source,
        "train.early_stopping.patience",
        "must be >= 1",
        t.early_stopping.patience,
    )
    _check_metrics(spec, source)
    _check_metric(spec, source, "train.checkpoint_metric", t.checkpoint_metric)
    _check_registry(spec, source)
    if t.early_stopping.metric is not None:
        _check_metric(spec, source, "train.early_stopping.metric", t.early_stopping.metric)
    _check_stage(spec, source)

    _check_data(spec, source)

    _require(e.context_frames >= 1, source, "eval.context_frames", "must be >= 1", e.context_frames)
    _require(e.horizon >= 1, source, "eval.horizon", "must be >= 1", e.horizon)
    _require(e.batch_size >= 1, source, "eval.batch_size", "must be >= 1", e.batch_size)
    for hz in e.report_horizons:
        _require(
            1 <= hz <= e.horizon,
            source,
            "eval.report_horizons",
            f"every step must be in [1, eval.horizon={e.horizon}]",
            hz,
        )

    _require(h.devices >= 1, source, "hardware.devices", "must be >= 1", h.devices)
    _require(h.num_nodes >= 1, source, "hardware.num_nodes", "must be >= 1", h.num_nodes)
    if h.num_threads is not None:
        _require(h.num_threads >= 1, source, "hardware.num_threads", "must be >= 1 (or null)", h.num_threads)
    world = h.devices * h.num_nodes
    _require(
        t.batch_size % (world * t.accumulate_grad_batches) == 0,
        source,
        "train.batch_size",
        f"the global batch must split evenly over {h.devices} device(s) x {h.num_nodes} node(s) x "
        f"{t.accumulate_grad_batches} accumulation step(s) = {world * t.accumulate_grad_batches} micro-batches",
        t.batch_size,
        f"Use a multiple of {world * t.accumulate_grad_batches}.",
    )
    if h.strategy == "fsdp":
        _require(
            world >= 2,
            source,
            "hardware.strategy",
            "FSDP shards over at least 2 devices",
            f"{h.devices} device(s) x {h.num_nodes} node(s)",
            "Use strategy: auto (or ddp) on one device.",
        )
        _require(
            h.accelerator == "gpu",
            source,
            "hardware.strategy",
            "FSDP requires GPUs (Lightning refuses it on CPU)",
            h.accelerator,
            "Use strategy: ddp on CPU.",
        )
        recover = "FSDP's forward pass gathers parameters across ranks: an OOM there cannot be recovered"
        _require(h.oom == "fail", source, "hardware.oom", recover, h.oom, "Use hardware.oom: fail with FSDP.")
    if h.accelerator == "cpu" and h.precision != "32-true":
        _require(
            h.precision == "bf16-mixed",
            source,
            "hardware.precision",
            "16-mixed needs a GPU",
            h.precision,
            "Use 32-true or bf16-mixed on CPU.",
        )
