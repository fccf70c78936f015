"""`ups-exp`: the command table. Imports nothing heavy at module level (`--help`, `validate` and `show`
must stay torch-, Lightning-, MLflow- and W&B-free)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

EXIT_OK, EXIT_FAILED, EXIT_BAD_SPEC, EXIT_REJECTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

log = logging.getLogger("ups")


def _configure_logging(debug: bool) -> None:
    import os

    # MLflow's own INFO lines ("Creating initial MLflow database tables...") are noise here; --debug shows them
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if debug else "WARNING")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(levelname)s %(name)s] %(message)s"))
    root = logging.getLogger("ups")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False


def _raise_interrupt(signum, frame):  # SIGTERM outside training behaves like Ctrl-C
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from ups.cli_parser import build_parser

    parser = build_parser()
    # overrides may come after flags (`run SPEC --json train.lr=1e-3`): argparse leaves those as extras
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("-") or "=" not in a]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra and not hasattr(args, "overrides"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    _configure_logging(args.debug)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    from ups.spec.errors import SpecError
    from ups.spec.load import ResolvedPipeline, load_experiment, load_spec

    try:
        if getattr(args, "study", None) is not None:  # it names a folder under $UPS_HOME
            from ups.spec.names import check_safe_name

            check_safe_name(args.study, key="--study", file="command line")
        if args.command == "export":
            return _export(args)
        if args.command == "sync":
            return _sync(args)
        if args.command in ("run", "validate", "show"):
            resolved = load_experiment(args.spec, args.overrides)
        elif args.command in (
            "promote",
            "eval",
        ):  # a pipeline: its last stage (and, by default, its last run)
            resolved = load_experiment(args.spec, args.overrides)
            if isinstance(resolved, ResolvedPipeline):
                if args.command == "promote" and not (args.run or args.study):
                    args.run = _last_pipeline_run(resolved)
                resolved = resolved.stages[-1]
        else:
            resolved = load_spec(args.spec, args.overrides)
        if args.command == "run" and args.print_launch:  # printed where it is submitted: no GPU check here
            return _print_launch(args, resolved)
        # a SLURM sweep's trials run on the cluster's nodes, not on the machine that submits them
        if args.command in ("run", "validate", "sweep") and getattr(args, "launcher", "local") != "slurm":
            _check_machine(resolved)
        if args.command == "validate":
            if isinstance(resolved, ResolvedPipeline):
                kinds = " → ".join(
                    f"{n} ({r.spec.stage.kind})" for n, r in zip(resolved.names, resolved.stages)
                )
                print(f"{args.spec}: ok (pipeline {kinds})")
                return EXIT_OK
            print(
                f"{args.spec}: ok ({resolved.spec.name}, stage {resolved.spec.stage.kind}, hardware {resolved.blocks['hardware']})"
            )
            return EXIT_OK
        if args.command == "show":
            print(resolved.to_yaml(), end="")
            return EXIT_OK
        if args.command == "run":
            return _run(args, resolved)
        if args.command == "sweep":
            return _sweep(args, resolved)
        if args.command == "promote":
            from ups.registry.promote import promote

            if args.study and args.run:
                raise SpecError("give --study or --run, not both", file="command line")
            if args.storage and args.run:
                raise SpecError(
                    "--storage chooses a study: give it with --study, not with --run", file="command line"
                )
            result = promote(
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
        if args.command == "eval":
            from ups.registry.evaluate import eval_registered
            from ups.run.report import metrics_table

            metrics = eval_registered(resolved, args.model)
            print(
                metrics_table(metrics, wall_seconds=0.0, where=[f"model: {args.model}"]).replace(
                    "wall time: 0.0 s\n", ""
                )
            )
            if args.json:
                print(json.dumps({"model": args.model, "metrics": metrics}))
            return EXIT_OK
        if args.command == "status":
            from ups.sweep.status import status_table, study_status

            status = study_status(resolved, storage=args.storage, study=args.study)
            print(json.dumps(status, default=str) if args.json else status_table(status))
            return EXIT_OK
        raise AssertionError(args.command)
    except SpecError as exc:
        if args.debug:
            raise
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_SPEC
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # anything else: one line, redacted (the traceback with --debug)
        if args.debug:
            raise
        from ups.spec.redact import redact

        message = " ".join(str(exc).split())[:500]
        print(f"{args.command} failed: {exc.__class__.__name__}: {redact(message)}", file=sys.stderr)
        return EXIT_FAILED


def _check_machine(resolved) -> None:
    from ups.spec.load import ResolvedPipeline
    from ups.spec.machine import check_machine

    for r in resolved.stages if isinstance(resolved, ResolvedPipeline) else [resolved]:
        check_machine(r.spec, profile=r.blocks.get("hardware"), file=str(r.path))


def _print_launch(args: argparse.Namespace, resolved) -> int:
    from ups.run.distributed import launch_command
    from ups.spec.errors import SpecError
    from ups.spec.load import ResolvedPipeline

    if isinstance(resolved, ResolvedPipeline):
        raise SpecError("--print-launch takes a single-stage spec, not a pipeline", file=args.spec)
    extra = [a for a in ("--json", "--no-progress", "--resume") if getattr(args, a[2:].replace("-", "_"))]
    print(launch_command(resolved.spec, args.spec, [*args.overrides, *extra], args.print_launch))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ups.registry.export import export
    from ups.tracking import workspace

    home = workspace.home()
    workspace.contain_environment(home)
    done = export(args.source, Path(args.out), home=home, tracking_uri=args.tracking_uri)
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


def _run(args: argparse.Namespace, resolved) -> int:
    from ups.run.single import RunInterrupted, run_spec, summary
    from ups.spec.errors import SpecError
    from ups.spec.load import ResolvedPipeline
    from ups.spec.redact import redact

    pipeline = isinstance(resolved, ResolvedPipeline)
    if args.from_stage and not pipeline:
        raise SpecError(
            "--from-stage needs a pipeline spec (`stages:`)", file="command line", key="--from-stage"
        )
    try:
        if pipeline:
            from ups.run.pipeline import run_pipeline

            result = run_pipeline(resolved, from_stage=args.from_stage, progress_bar=not args.no_progress)
        else:
            result = run_spec(resolved, resume=args.resume, progress_bar=not args.no_progress)
    except RunInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the run failed: one clear line (tracebacks with --debug)
        from ups.spec.errors import SpecError

        if isinstance(exc, SpecError):
            raise
        if args.debug:
            raise
        print(f"run failed: {exc.__class__.__name__}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
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


def _sync(args: argparse.Namespace) -> int:
    from ups.tracking.sync import sync

    return (
        EXIT_OK
        if sync(args.runs, tracking_uri=args.tracking_uri, wandb_timeout=args.wandb_timeout)
        else EXIT_FAILED
    )


def _sweep(args: argparse.Namespace, resolved) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
