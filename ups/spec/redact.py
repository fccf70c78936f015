"""Credentials never reach a log, a printout or a tracked param."""

from __future__ import annotations

import re
from typing import Any

_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<secret>[^@/\s]+)@"
)
_SECRET_KEYS = re.compile(r"(api[_-]?key|token|secret|password|passwd)", re.IGNORECASE)
MASK = "***"


def redact(text: str) -> str:
    """`postgresql://u:pw@host/db` → `postgresql://u:***@host/db`."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


def redact_tree(value: Any, key: str = "") -> Any:
    """Redact every string in a nested dict/list; values under secret-looking keys are masked whole."""
    if isinstance(value, dict):
        return {k: redact_tree(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_tree(v, key) for v in value)
    if isinstance(value, str):
        if key and _SECRET_KEYS.search(key) and value:
            return MASK
        return redact(value)
    return value
