"""Names that become file and folder names under $UPS_HOME must stay inside it."""

from __future__ import annotations

import re

from ups.spec.errors import SpecError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""Names that become folder and file names under $UPS_HOME (`name`, `--study`, `registry.model_name`)."""


def check_safe_name(value: str, *, key: str, file: str) -> None:
    """A name used in a path must stay inside $UPS_HOME: letters, digits, `.`, `_`, `-`; not starting with `.`."""
    if not SAFE_NAME.fullmatch(value or ""):
        raise SpecError(
            "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit (it names files)",
            file=file,
            key=key,
            got=value,
        )
