"""Registry alias names: checked before promote reads or registers anything. Standard library only."""

from __future__ import annotations

import re

from ups.spec.errors import SpecError

_ALIAS = re.compile(r"[\w\-]{1,200}")
_RESERVED_VERSION = re.compile(r"[vV]\d+")


def check_alias(alias: str) -> None:
    """MLflow's rules for an alias (and for `previous-<alias>`, which promote also sets): letters, digits, `_`
    and `-`; not `latest`, not a version name such as `v1`."""
    if not _ALIAS.fullmatch(alias or ""):
        raise SpecError(
            "an alias is 1-200 letters, digits, '_' or '-'", file="command line", key="--alias", got=alias
        )
    if alias.lower() == "latest" or _RESERVED_VERSION.fullmatch(alias):
        raise SpecError(
            "this alias is reserved by MLflow ('latest' and version names like 'v1' name versions)",
            file="command line",
            key="--alias",
            got=alias,
            hint="Use a name such as champion, staging or candidate-v1.",
        )
