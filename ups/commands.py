"""One function per `ups-exp` command. Each returns an exit code or raises: `SpecError` for bad input (exit 2),
`RunInterrupted`/`KeyboardInterrupt` (130), anything else is a failure (1). `ups.cli` prints and maps them.
Heavy modules are imported inside the commands that need them."""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_OK, EXIT_FAILED, EXIT_REJECTED, EXIT_INTERRUPTED = 0, 1, 3, 130


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped a run (`ups.run.single` raises its own subclass)."""


def dispatch(args: argparse.Namespace) -> int:
    from ups.spec.errors import SpecError
    from ups.spec.load import ResolvedPipeline, load_experiment, load_spec

    if getattr(args, "study", None) is not None:  # it names a folder under $UPS_HOME
        from ups.spec.names import check_safe_name

        check_safe_name(args.study, key="--study", file="command line")
    if args.command == "catalog":
        return catalog_listing(args)
    if args.command == "export":
        return export(args)
    if args.command == "sync":
        return sync(args)
    if args.command == "predict":
        return predict(args)
    if args.command == "data":
        return describe_data(args)
    if args.command == "promote":
        _check_promote_flags(args)
    if getattr(args, "spec", None):
        args.spec = spec_argument(args.spec)
    if args.command == "runs":
        return list_runs(args)
    if args.command in ("run", "validate", "show", "promote", "eval"):
        resolved = load_experiment(args.spec, args.overrides)
        if args.command in ("promote", "eval") and isinstance(resolved, ResolvedPipeline):
            if args.command == "promote" and not (args.run or args.study):  # its last stage's last run
                args.run = _last_pipeline_run(resolved)
            resolved = resolved.stages[-1]
    else:
        resolved = load_spec(args.spec, args.overrides)
    if args.command == "run" and args.print_launch:  # printed where it is submitted: no GPU check here
        return print_launch(args, resolved)
    # a SLURM sweep's trials run on the cluster's nodes, not on the machine that submits them
    if args.command in ("run", "validate", "sweep") and getattr(args, "launcher", "local") != "slurm":
        _check_machine(resolved)
    command = {
        "validate": validate,
        "show": show,
        "run": run,
        "sweep": sweep,
        "promote": promote,
        "eval": evaluate,
        "status": status,
    }.get(args.command)
    if command is None:
        raise SpecError("unknown command", file="command line", got=args.command)
    return command(args, resolved)


def spec_argument(name: str) -> str:
    """A spec file as given, else a shipped spec by name (`ups-exp run burgers`); neither is one line."""
    from ups.spec.errors import SpecError, did_you_mean
    from ups.spec.paths import find_spec, shipped_specs

    try:
        return str(find_spec(name))
    except FileNotFoundError:
        raise SpecError(
            "no such spec file, and no shipped spec of that name",
            file="command line",
            got=name,
            hint=did_you_mean(name.removesuffix(".yaml"), shipped_specs()).replace(
                "Choices", "Shipped specs"
            ),
        ) from None


def list_runs(args: argparse.Namespace) -> int:
    """`ups-exp runs`: read-only; a store that does not exist yet is one line."""
    from ups.run.listing import list_runs as find
    from ups.run.listing import shown_metrics, sort_rows, table
    from ups.spec.errors import SpecError
    from ups.spec.load import ResolvedPipeline, load_experiment
    from ups.tracking import workspace
    from ups.tracking.session import mlflow_uri
    from ups.tracking.store import open_store
    from ups.tracking.workspace import default_mlflow_uri

    if args.spec and args.experiment:
        raise SpecError("give a spec or --experiment, not both", file="command line", key="--experiment")
    home = workspace.home(create=False)
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_mlflow_uri(home)
    experiments = [args.experiment] if args.experiment else None
    if args.spec:
        resolved = load_experiment(args.spec, args.overrides)
        first = resolved.stages[0] if isinstance(resolved, ResolvedPipeline) else resolved
        experiments = [first.spec.name]
        uri = args.tracking_uri or mlflow_uri(first.spec, home)
    client = open_store(uri, key="--tracking-uri", create=False)
    if experiments is None:
        experiments = [e.name for e in client.search_experiments()]
    rows = sort_rows(find(client, experiments), args.sort)
    if args.limit and args.limit > 0:
        rows = rows[: args.limit]
    if args.json:
        print(json.dumps([r.to_json() for r in rows]))
        return EXIT_OK
    if not rows:
        print(f"no runs in {', '.join(experiments) or 'this store'}")
        return EXIT_OK
    print(table(rows, shown_metrics(rows, args.sort)))
    return EXIT_OK


def predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ups.run.predict import predict as roll_out
    from ups.tracking import workspace

    home = workspace.home(create=False)
    workspace.contain_environment(home)
    done = roll_out(
        args.model,
        input_path=Path(args.input),
        out=Path(args.out),
        steps=args.steps,
        context=args.context,
        fmt=args.format,
        task=args.task,
        force=args.force,
        home=home,
        tracking_uri=args.tracking_uri,
    )
    what = (
        "solutions"
        if done["stage"] and done["steps"] == 0
        else f"{done['context']} given + {done['steps']} predicted frames"
    )
    print(f"wrote {done['trajectories']} trajectories ({what}) to {done['out']}")
    if args.json:
        print(json.dumps(done))
    return EXIT_OK


def describe_data(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ups.run.predict import describe, describe_lines

    info = describe(Path(args.file), args.format, {})
    print(json.dumps(info) if args.json else "\n".join(describe_lines(info)))
    return EXIT_OK


def catalog_listing(args: argparse.Namespace) -> int:
    """`ups-exp catalog [TABLE] [--json]`: every row, what implements it and where it comes from."""
    import dataclasses

    from ups import catalog
    from ups.spec.errors import SpecError

    tables = [args.table] if args.table else list(catalog.TABLES)
    try:
        listed = {t: catalog.listing(t) for t in tables}
    except catalog.CatalogError as exc:  # an installed plugin that is broken
        raise SpecError(exc.problem, key="catalog", got=exc.got, hint=exc.hint) from None
    if args.json:
        print(json.dumps({t: [dataclasses.asdict(r) for r in rows] for t, rows in listed.items()}))
        return EXIT_OK
    for table, rows in listed.items():
        print(f"{table}:")
        width = max((len(r.name) for r in rows), default=0)
        for r in rows:
            origin = "" if r.source == catalog.BUILT_IN else f"  [{r.source}]"
            print(f"  {r.name.ljust(width)}  {r.description or r.implementation}{origin}")
    return EXIT_OK


def _check_machine(resolved) -> None:
    from ups.spec.load import ResolvedPipeline
    from ups.spec.machine import check_machine

    for r in resolved.stages if isinstance(resolved, ResolvedPipeline) else [resolved]:
        check_machine(r.spec, profile=r.blocks.get("hardware"), file=str(r.path))


def validate(args, resolved) -> int:
    from ups.spec.load import ResolvedPipeline

    if isinstance(resolved, ResolvedPipeline):
        kinds = " → ".join(f"{n} ({r.spec.stage.kind})" for n, r in zip(resolved.names, resolved.stages))
        print(f"{args.spec}: ok (pipeline {kinds})")
        return EXIT_OK
    hardware = resolved.blocks["hardware"]
    print(f"{args.spec}: ok ({resolved.spec.name}, stage {resolved.spec.stage.kind}, hardware {hardware})")
    return EXIT_OK


def show(args, resolved) -> int:
    print(resolved.to_yaml(), end="")
    return EXIT_OK


def print_launch(args: argparse.Namespace, resolved) -> int:
    """The torchrun/srun command for the spec. Overrides are printed redacted; a credential among them must reach
    the ranks through the environment (e.g. MLFLOW_TRACKING_URI), which the printed command does not show."""
    from ups.run.distributed import launch_command
    from ups.spec.errors import SpecError
    from ups.spec.load import ResolvedPipeline
    from ups.spec.redact import redact

    if isinstance(resolved, ResolvedPipeline):
        raise SpecError("--print-launch takes a single-stage spec, not a pipeline", file=args.spec)
    extra = [a for a in ("--json", "--no-progress", "--resume") if getattr(args, a[2:].replace("-", "_"))]
    if args.resume_run:
        extra += ["--resume-run", args.resume_run]
    shown = [redact(o) for o in args.overrides]
    print(launch_command(resolved.spec, args.spec, [*shown, *extra], args.print_launch))
    if shown != list(args.overrides):
        print(
            "# a credential in the overrides is shown as ***: give it to every rank through the environment "
            "(MLFLOW_TRACKING_URI, UPS_SWEEP_STORAGE, WANDB_API_KEY), not on the command line",
            file=sys.stderr,
        )
    return EXIT_OK


def export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ups.registry.export import export as export_model
    from ups.tracking import workspace

    home = workspace.home(create=False)
    workspace.contain_environment(home)
    done = export_model(
        args.source, Path(args.out), home=home, tracking_uri=args.tracking_uri, force=args.force
    )
    print(f"exported {done['kind']} predictor ({done['keys']} tensors) from {args.source} to {done['out']}")
    if args.json:
        print(json.dumps(done))
    return EXIT_OK


def _last_pipeline_run(pipeline) -> str:
    from ups.run.pipeline import finished_stages
    from ups.spec.errors import SpecError

    done = finished_stages(pipeline)
    if len(done) < len(pipeline.stages):
        raise SpecError(
            f"the pipeline's last stage ({pipeline.names[-1]!r}) has not finished for this resolved spec",
            file=str(pipeline.path),
            hint=f"Run it: ups-exp run {pipeline.path}; or pass --run RUN_ID.",
        )
    return done[-1].run_id


def run(args: argparse.Namespace, resolved) -> int:
    from ups.run.single import RunInterrupted as Interrupted
    from ups.run.single import run_spec, summary
    from ups.spec.errors import SpecError
    from ups.spec.load import ResolvedPipeline

    pipeline = isinstance(resolved, ResolvedPipeline)
    if args.from_stage and not pipeline:
        raise SpecError(
            "--from-stage needs a pipeline spec (`stages:`)", file="command line", key="--from-stage"
        )
    if args.resume_run and pipeline:
        raise SpecError(
            "--resume-run takes a single-stage spec (a pipeline run again skips its finished stages)",
            file="command line",
            key="--resume-run",
        )
    try:
        if pipeline:
            from ups.run.pipeline import run_pipeline

            result = run_pipeline(resolved, from_stage=args.from_stage, progress_bar=not args.no_progress)
        else:
            result = run_spec(
                resolved,
                resume=args.resume,
                resume_run=args.resume_run,
                progress_bar=not args.no_progress,
            )
    except Interrupted as exc:
        raise RunInterrupted(str(exc)) from None
    except SpecError:
        raise
    except Exception as exc:  # the run failed: one clear line (the traceback with --debug)
        raise RunFailed(f"{exc.__class__.__name__}: {exc}") from exc
    if result is None or (pipeline and not result.stages):  # a non-zero DDP rank: rank 0 reports
        return EXIT_OK
    if pipeline:
        from ups.run.report import pipeline_summary

        print(pipeline_summary(result))
    else:
        print(summary(result))
        if result.unsent:  # training succeeded; its exit code says so, and one line says what is left to send
            print(
                f"WARNING: MLflow was unreachable: {result.unsent} item(s) of run {result.run_id} await "
                f"`ups-exp sync {result.run_id}`",
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps(result.to_json()))
    return EXIT_OK


class RunFailed(RuntimeError):
    """The run failed after it started; `ups-exp run` prints `run failed: <reason>` (exit 1)."""


def sync(args: argparse.Namespace) -> int:
    from ups.tracking.sync import sync as sync_runs

    done = sync_runs(args.runs, tracking_uri=args.tracking_uri, wandb_timeout=args.wandb_timeout)
    return EXIT_OK if done else EXIT_FAILED


def sweep(args: argparse.Namespace, resolved) -> int:
    from ups.sweep.driver import SweepFailed, run_sweep
    from ups.sweep.slurm import SlurmOptions

    try:
        result = run_sweep(
            resolved,
            trials=args.trials,
            workers=args.workers,
            storage=args.storage,
            study=args.study,
            new_study=args.new_study,
            worker_index=args.worker_index,
            launcher=args.launcher,
            slurm=SlurmOptions(
                partition=args.slurm_partition,
                timeout_min=args.slurm_timeout_min,
                cpus_per_worker=args.slurm_cpus_per_worker,
                max_requeues=args.slurm_max_requeues,
            ),
        )
    except SweepFailed as exc:
        print(f"sweep failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if result is None:  # a worker
        return EXIT_OK
    t = result.trials
    print(
        f"study {result.study} ({result.storage}): {t['complete']} complete, {t['pruned']} pruned, {t['failed']} failed"
    )
    best = result.best
    if isinstance(best, dict):
        print(
            f"best: trial {best['number']} value {best['value']:.5g} params {best['params']} run {best['run_id']}"
        )
    if args.json:
        print(json.dumps(result.to_json(), default=str))
    return EXIT_OK


def _check_promote_flags(args) -> None:
    """Everything promote is told on its command line is checked before it reads or registers anything."""
    from ups.registry.aliases import check_alias
    from ups.spec.errors import SpecError

    if args.study and args.run:
        raise SpecError("give --study or --run, not both", file="command line")
    if args.storage and args.run:
        raise SpecError(
            "--storage chooses a study: give it with --study, not with --run", file="command line"
        )
    check_alias(args.alias)


def promote(args: argparse.Namespace, resolved) -> int:
    from ups.registry.promote import promote as promote_run

    result = promote_run(
        resolved,
        study=args.study,
        run_id=args.run,
        alias=args.alias,
        dry_run=args.dry_run,
        storage=args.storage,
    )
    print("\n".join(result.lines))
    if args.json:
        print(json.dumps(result.to_json(), default=str))
    return EXIT_REJECTED if result.decision == "rejected" else EXIT_OK


def evaluate(args: argparse.Namespace, resolved) -> int:
    from ups.registry.evaluate import eval_model
    from ups.run.report import metrics_table

    metrics = eval_model(resolved, args.model)
    table = metrics_table(metrics, wall_seconds=0.0, where=[f"model: {args.model}"])
    print(table.replace("wall time: 0.0 s\n", ""))
    if args.json:
        print(json.dumps({"model": args.model, "metrics": metrics}))
    return EXIT_OK


def status(args: argparse.Namespace, resolved) -> int:
    from ups.sweep.status import status_table, study_status

    result = study_status(resolved, storage=args.storage, study=args.study)
    print(json.dumps(result, default=str) if args.json else status_table(result))
    return EXIT_OK
