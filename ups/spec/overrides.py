"""`key=value` overrides travel to the processes ups starts (Lightning's DDP re-exec, sweep workers, SLURM jobs)
in the environment, never in their command line: argv is world-readable (`ps`) and submitit pickles it to disk.
"""

from __future__ import annotations

import json
import os

OVERRIDES_ENV = "UPS_OVERRIDES"
"""A JSON list of `key=value` strings that a child `ups-exp` applies before its own command line's."""


def inherited() -> list[str]:
    """The overrides a parent ups process handed this one (empty for a command a user typed)."""
    raw = os.environ.get(OVERRIDES_ENV)
    if not raw:
        return []
    try:
        values = json.loads(raw)
    except ValueError:
        values = None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        from ups.spec.errors import SpecError

        raise SpecError(
            f"${OVERRIDES_ENV} must be a JSON list of key=value strings (ups sets it for its workers)"
        )
    return values


def child_env(overrides: list[str] | tuple[str, ...]) -> dict[str, str]:
    """The environment entry that hands `overrides` to a child process."""
    return {OVERRIDES_ENV: json.dumps(list(overrides))}
