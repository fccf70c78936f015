"""`ups-exp`'s argument parser: every subcommand and its flags. Standard library only (`--help` stays fast)."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """Bad usage of the command line: printed as one line, exit 2 (argparse would print its usage block)."""

    def __init__(self, prog: str, message: str) -> None:
        self.prog, self.message = prog, message
        super().__init__(f"{prog}: {message}")

    def render(self) -> str:
        return f"{self.prog}: {self.message}. See `{self.prog} --help`."


class Parser(argparse.ArgumentParser):
    """argparse, with errors raised as one-line `UsageError`s (subcommand parsers are of this class too)."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and its flags (`ups-exp --help`). `key=value` overrides are not an argparse positional
    (it would call them required): `ups.cli` takes them from what argparse leaves over."""
    parser = Parser(
        prog="ups-exp",
        description="Declarative experiments for neural PDE surrogates: one YAML spec → trained, tracked models.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_spec(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_,
            description=help_ + ". Spec keys are overridden by `key=value` arguments (e.g. train.lr=3e-4).",
            usage=f"ups-exp {name} SPEC [key=value ...] [options]",
        )
        p.add_argument("spec", metavar="SPEC", help="path to a spec YAML file (e.g. specs/burgers.yaml)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return p

    run = with_spec("run", "train one run of a spec (tracked in MLflow and W&B)")
    run.add_argument(
        "--resume", action="store_true", help="continue the latest unfinished run of the same resolved spec"
    )
    run.add_argument(
        "--resume-run",
        metavar="RUN_ID",
        help="continue that unfinished run (same MLflow and W&B ids); its resolved spec must be this one",
    )
    run.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--from-stage", metavar="NAME", help="pipelines: train NAME and every later stage again")
    run.add_argument(
        "--print-launch",
        nargs="?",
        const="torchrun",
        choices=("torchrun", "srun"),
        help="print the torchrun (default) or srun command that runs this spec on its profile's devices and nodes",
    )
    sweep = with_spec("sweep", "run an Optuna study of the spec's search space (resumable, parallel)")
    sweep.add_argument(
        "--trials", type=int, help="total finished trials the study should reach (overrides sweep.trials)"
    )
    sweep.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on this machine (or SLURM jobs, --launcher slurm)",
    )
    sweep.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="local: workers are processes here; slurm: each worker is a SLURM job (submitit; PostgreSQL storage)",
    )
    sweep.add_argument(
        "--slurm-partition", metavar="NAME", help="--launcher slurm: the partition to submit to"
    )
    sweep.add_argument(
        "--slurm-timeout-min",
        type=int,
        default=24 * 60,
        metavar="MIN",
        help="--launcher slurm: each job's time limit",
    )
    sweep.add_argument(
        "--slurm-cpus-per-worker",
        type=int,
        metavar="N",
        help="--launcher slurm: CPUs per job (and torch threads)",
    )
    sweep.add_argument(
        "--slurm-max-requeues",
        type=int,
        default=3,
        metavar="N",
        help="--launcher slurm: resubmit a preempted worker job at most N times (default 3)",
    )
    sweep.add_argument("--storage", help="Optuna storage URL (default sqlite:///$UPS_HOME/optuna.db)")
    sweep.add_argument("--study", help="study name (default: the spec's name)")
    sweep.add_argument("--new-study", action="store_true", help="start a fresh study instead of continuing")
    sweep.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    sweep.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    status = with_spec("status", "show the spec's study: trials, states, values, best")
    status.add_argument("--storage", help="Optuna storage URL")
    status.add_argument("--study", help="study name")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    promote = with_spec("promote", "register the best run in the MLflow Model Registry behind evidence gates")
    promote.add_argument("--study", help="choose among this study's trials (default: the spec's study)")
    promote.add_argument("--run", help="promote this MLflow run instead of a study's best trial")
    promote.add_argument("--storage", help="the study's Optuna storage URL (as for sweep and status)")
    promote.add_argument("--alias", default="champion", help="alias to move (default: champion)")
    promote.add_argument("--dry-run", action="store_true", help="report the decision, change nothing")
    promote.add_argument(
        "--json", action="store_true", help="print a JSON summary as the last line of stdout"
    )
    evaluate = with_spec("eval", "score a registered model on the spec's test split, next to persistence")
    evaluate.add_argument(
        "--model",
        required=True,
        help="models:/NAME@ALIAS, models:/NAME/VERSION, a run id, a .ckpt file or an exported folder",
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    export = sub.add_parser(
        "export",
        help="write a trained predictor as plain PyTorch: weights.npz (no pickle) + config.json",
        description="Write a run's, a checkpoint's or a registered model's predictor for plain PyTorch: "
        "weights.npz (a state_dict, no pickle) and config.json (architecture, lineage, layout). "
        "Load it with ups.loading.from_export(DIR).predictor().",
    )
    export.add_argument(
        "source", metavar="SOURCE", help="RUN_ID, models:/NAME@ALIAS, models:/NAME/VERSION or a .ckpt"
    )
    export.add_argument("--out", required=True, metavar="DIR", help="folder to write (created if missing)")
    export.add_argument("--force", action="store_true", help="replace the files of a DIR that is not empty")
    export.add_argument(
        "--tracking-uri", help="MLflow store (default $MLFLOW_TRACKING_URI, then $UPS_HOME's)"
    )
    export.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    export.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    runs = sub.add_parser(
        "runs",
        help="list an experiment's runs with key metrics next to persistence (from MLflow)",
        usage="ups-exp runs [SPEC | --experiment NAME] [--sort METRIC] [--limit N] [--json]",
        description="An experiment's runs, best first by --sort (in the metric's own direction), else newest "
        "first: run id, stage, model kind, status, start, and key metrics next to persistence. The experiment is "
        "the spec's name, or --experiment; without either, every experiment of the store. Read-only.",
    )
    runs.add_argument("spec", nargs="?", metavar="SPEC", help="a spec file or a shipped spec's name")
    runs.add_argument("--experiment", metavar="NAME", help="an MLflow experiment (a spec's `name`)")
    runs.add_argument("--sort", metavar="METRIC", help="e.g. val/rollout_nrmse or test/corr_time")
    runs.add_argument(
        "--limit", type=int, default=20, metavar="N", help="at most N runs (default 20; 0: all)"
    )
    runs.add_argument(
        "--tracking-uri", help="MLflow store (default: the spec's, $MLFLOW_TRACKING_URI, then $UPS_HOME's)"
    )
    runs.add_argument("--json", action="store_true", help="print the runs as one JSON list (every metric)")
    runs.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    predict = sub.add_parser(
        "predict",
        help="roll a model out from the first frames of every trajectory of a data file, into a new file",
        usage="ups-exp predict MODEL --input FILE --steps N --out FILE [--context N] [--format NAME] "
        "[--task NAME] [--force] [--json]",
        description="MODEL is models:/NAME@ALIAS, models:/NAME/VERSION, a run id or a checkpoint. The input is "
        "read by --format (default: the model's) and brought to the model's grid and frame spacing; the output "
        "holds the --context given frames and --steps predicted ones, in PDEBench's layout (steady models: "
        "their solutions). Written whole or not at all; an existing --out is refused without --force.",
    )
    predict.add_argument(
        "model", metavar="MODEL", help="models:/NAME@ALIAS, models:/NAME/VERSION, a run id or a .ckpt"
    )
    predict.add_argument("--input", required=True, metavar="FILE", help="the data file to start from")
    predict.add_argument("--steps", type=int, metavar="N", help="frames to predict (not for steady models)")
    predict.add_argument("--out", required=True, metavar="FILE", help="the HDF5 file to write")
    predict.add_argument(
        "--context", type=int, metavar="N", help="given frames (default: the model's eval.context_frames)"
    )
    predict.add_argument(
        "--format", metavar="NAME", help="the input's format (default: the model's data.format)"
    )
    predict.add_argument("--task", metavar="NAME", help="multi-task models: the task the file holds")
    predict.add_argument("--force", action="store_true", help="replace an existing --out")
    predict.add_argument(
        "--tracking-uri", help="MLflow store (default $MLFLOW_TRACKING_URI, then $UPS_HOME's)"
    )
    predict.add_argument(
        "--json", action="store_true", help="print a JSON summary as the last line of stdout"
    )
    predict.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    data = sub.add_parser(
        "data",
        help="show what a data format reads from a file (shapes, spacing, parameters, family), without training",
        usage="ups-exp data FILE [--format NAME] [--json]",
    )
    data.add_argument("file", metavar="FILE", help="a data file")
    data.add_argument("--format", default="pdebench", metavar="NAME", help="its format (default pdebench)")
    data.add_argument("--json", action="store_true", help="print one JSON object")
    data.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sync = sub.add_parser(
        "sync",
        help="re-send what a tracking outage spooled (MLflow); sync offline W&B runs when a key is set",
        description="Re-send the MLflow items that runs spooled while the tracking server was unreachable "
        "(runs/<id>/spool.jsonl), in order and only once; then `wandb sync` the offline W&B runs when "
        "WANDB_API_KEY is set. Without RUN_IDs: every run of the workspace with something to send.",
    )
    sync.add_argument(
        "runs", nargs="*", metavar="RUN_ID", help="runs to sync (default: all with pending items)"
    )
    sync.add_argument("--tracking-uri", help="MLflow store (default $MLFLOW_TRACKING_URI, then $UPS_HOME's)")
    sync.add_argument(
        "--wandb-timeout", type=float, default=600.0, help="seconds allowed per W&B run upload (default 600)"
    )
    sync.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    catalog = sub.add_parser(
        "catalog",
        help="list the stages, models, families, data formats and metrics ups knows, and where each comes from",
        description="List the catalogue: built-in rows and those installed packages add through entry points "
        "(ups.models, ups.formats, ups.metrics; provisional: ups.stages, ups.families). See docs/extending.md.",
    )
    catalog.add_argument(
        "table",
        nargs="?",
        choices=("stages", "models", "families", "formats", "metrics"),
        help="one table (default: all five)",
    )
    catalog.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    catalog.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    with_spec("validate", "check a spec (and its overrides) without running anything")
    with_spec("show", "print the fully resolved spec as YAML")
    return parser
