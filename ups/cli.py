"""`ups-exp`: parse the command line, set up the process (logging, signals, redacted output, overrides in the
environment), run the command (`ups.commands`), and turn its outcome into DESIGN's exit code.

Imports nothing heavy at module level (`--help`, `validate` and `show` stay torch-, Lightning-, MLflow- and
W&B-free). Every line the process prints goes through `redact`, `--debug` tracebacks included.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys

EXIT_OK, EXIT_FAILED, EXIT_BAD_SPEC, EXIT_REJECTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

log = logging.getLogger("ups")


def _configure_logging(debug: bool) -> None:
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


def _split(parser, raw: list[str]):
    """(args, overrides): argparse's result and the `key=value` arguments it left over, in order."""
    from ups.cli_parser import UsageError

    args, extra = parser.parse_known_args(raw)
    unknown = [a for a in extra if a.startswith("-") or "=" not in a]
    if unknown:
        raise UsageError(f"ups-exp {args.command}", f"unrecognized arguments: {' '.join(unknown)}")
    if extra and not hasattr(args, "spec"):
        raise UsageError(f"ups-exp {args.command}", f"takes no key=value overrides: {' '.join(extra)}")
    return args, extra


def _hide(raw: list[str], overrides: list[str]) -> None:
    """A command typed by a user: its overrides move to the environment (what child processes read) and out of
    `sys.argv` (what a DDP re-exec and W&B read); a credential on it is overwritten in the process's memory."""
    from ups.console import hide_command_line
    from ups.spec.redact import redact

    rest = list(raw)
    for item in overrides:
        rest.remove(item)
    shown = [redact(a) for a in raw]
    if shown != raw:
        hide_command_line([redact(sys.argv[0]), *shown])
    sys.argv[1:] = [redact(a) for a in rest]


def main(argv: list[str] | None = None) -> int:
    """The `ups-exp` entry point; `argv` (tests, scripts) leaves `sys.argv` and the process title alone."""
    from ups.console import redacting_output
    from ups.spec.redact import learn_environment, learning, redact

    typed = argv is None
    raw = list(sys.argv[1:] if typed else argv)
    with learning(), redacting_output():
        learn_environment()
        for token in raw:
            redact(token)  # learn what the command line holds, so it is masked wherever it shows up
        return _main(raw, typed)


def _main(raw: list[str], typed: bool) -> int:
    from ups.cli_parser import UsageError, build_parser
    from ups.spec.errors import SpecError
    from ups.spec.overrides import child_env, inherited
    from ups.tracking.workspace import scoped_env

    debug = "--debug" in raw
    try:
        args, typed_overrides = _split(build_parser(), raw)
        overrides = [*inherited(), *typed_overrides]
        args.overrides = overrides
    except UsageError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_BAD_SPEC
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_SPEC
    _configure_logging(args.debug)
    if typed:
        _hide(raw, typed_overrides)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    env = child_env(overrides) if overrides else {}
    with scoped_env(**env) if env else contextlib.nullcontext():
        return _outcome(args, debug)


def _outcome(args, debug: bool) -> int:
    """Run the command; its exceptions become one line (the traceback too with --debug) and an exit code."""
    import traceback

    from ups.commands import RunFailed, RunInterrupted, dispatch
    from ups.spec.errors import SpecError
    from ups.spec.redact import clip

    try:
        return dispatch(args)
    except SpecError as exc:
        if debug:
            traceback.print_exc()
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_SPEC
    except (KeyboardInterrupt, RunInterrupted) as exc:
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # anything else: one line, redacted (the traceback with --debug)
        if debug:
            traceback.print_exc()
        message = clip(" ".join(str(exc).split()), 500)
        kind = "" if isinstance(exc, RunFailed) else f"{exc.__class__.__name__}: "
        print(f"{args.command} failed: {kind}{message}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
