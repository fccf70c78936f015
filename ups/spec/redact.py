"""Credentials never reach a log, a printout, a tracked param or a child's command line.

`redact(text)` masks every form the database drivers and HTTP clients accept for a secret:

- the password of a URL's userinfo, whatever it holds (`/`, `:`, `%`-encoding, an encoded or even a bare `@`):
  `postgresql://u:pa/ss@host/db` → `postgresql://u:***@host/db` (SQLAlchemy reads the password up to the `@`,
  libpq up to the first `@` or `/`; the mask covers the longest reading);
- the same without a scheme, or with a malformed one (`postgresql//u:pw@host`, `u:pw@host/db`);
- secret-named parameters: `?password=...`, `&sslpassword=...`, `api_key=...` in a query string, an override
  (`tracking.mlflow.password=...`) or a libpq DSN (`host=h password='se cret' dbname=d`), and `'token': '...'`
  in a printed mapping, `password: ...` in YAML;
- `Authorization: Bearer ...` / `Basic ...` credentials;
- any secret this process has learned (`remember`): the values of secret environment variables (W&B's key) and
  every password that one of the rules above masked, also where it later appears on its own (decoded, quoted).

Masking errs on the side of hiding: a path such as `a:b@c` loses `b`.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any
from urllib.parse import unquote

MASK = "***"

_SECRET_WORD = r"(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key)"
_SECRET_KEYS = re.compile(rf"{_SECRET_WORD}$", re.I)
"""Mapping keys whose values are masked whole (`redact_tree`): `api_key`, `wandb.token`, not `num_tokens`."""

# scheme://user:SECRET@host — the secret runs to the last '@' of the token (quotes, whitespace and brackets end it)
_URL_USERINFO = re.compile(
    r"(?P<head>(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*:/*)?[^\s:/@'\"<>()\[\]{},;=]*:)"
    # without a scheme, `word:/x@y` is a URI such as MLflow's models:/NAME@ALIAS, not a password
    r"(?P<secret>(?(scheme)(?!//)|(?!/))[^\s'\"<>]+)(?P<tail>@)(?=[^\s@'\"<>]*[\w\]])"
)
# key=value with a secret-named key: query strings, overrides, libpq DSNs (single-quoted values may hold spaces)
_KEY_VALUE = re.compile(
    rf"(?P<head>(?<![\w.\-])[\w.\-]*{_SECRET_WORD}\s*=\s*)"
    r"(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\"}\])]+)",
    re.I,
)
# 'password': 'x' / "token": "x" in a printed mapping or JSON
_QUOTED_KEY = re.compile(
    rf"(?P<head>(?P<q>['\"])[\w.\-]*{_SECRET_WORD}(?P=q)\s*:\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")",
    re.I,
)
# password: x in YAML
_YAML_KEY = re.compile(
    rf"(?P<head>^[ \t-]*[\w.\-]*{_SECRET_WORD}:[ \t]+)(?P<secret>[^\s#][^\n#]*)", re.I | re.M
)
_AUTH_HEADER = re.compile(
    r"(?P<head>(?:\bAuthorization:\s*[A-Za-z]+|\bBearer)\s+)(?P<secret>[A-Za-z0-9._~+/\-]{8,}=*)", re.I
)

SECRET_ENV = (
    "WANDB_API_KEY",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "DATABRICKS_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "PGPASSWORD",
)
"""Environment variables whose whole value is a secret."""

URL_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "UPS_SWEEP_STORAGE", "DATABASE_URL")
"""Environment variables that hold a URL whose password is a secret."""

MIN_LEARNED = 6
"""Shorter secrets are masked in their URL or key=value context only: masking every bare `ups` would mangle output."""

_known: set[str] = set()


def remember(secret: str | None) -> None:
    """Mask `secret` (and its percent-decoded form) wherever it appears from now on in this process."""
    if not secret:
        return
    for form in {secret, unquote(secret), secret.strip("'\"")}:
        if len(form) >= MIN_LEARNED and form != MASK:
            _known.add(form)


@contextlib.contextmanager
def learning():
    """Secrets learned inside the block are forgotten after it (one CLI command called in-process, e.g. by a
    test, must not mask what the next one prints)."""
    before = set(_known)
    try:
        yield
    finally:
        _known.clear()
        _known.update(before)


def learn_environment(environ: dict[str, str] | None = None) -> None:
    """Remember the secrets in the environment: secret variables whole, and the passwords of URL variables."""
    environ = os.environ if environ is None else environ
    for name in SECRET_ENV:
        remember(environ.get(name))
    for name in URL_ENV:
        if environ.get(name):
            redact(environ[name])  # masking a password remembers it


def _masked(match: re.Match) -> str:
    secret = match["secret"]
    if secret == MASK or secret.strip("'\"") == MASK:
        return match[0]
    remember(secret)
    return match["head"] + MASK + (match.groupdict().get("tail") or "")


def redact(text: str | None) -> str:
    """`text` with every credential masked (see the module docstring for the forms)."""
    if not text:
        return text or ""
    text = str(text)
    for rule in (_URL_USERINFO, _KEY_VALUE, _QUOTED_KEY, _YAML_KEY, _AUTH_HEADER):
        text = rule.sub(_masked, text)
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_tree(value: Any, key: str = "") -> Any:
    """Redact every string in a nested dict/list; values under secret-looking keys are masked whole."""
    if isinstance(value, dict):
        return {k: redact_tree(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_tree(v, key) for v in value)
    if isinstance(value, str):
        if key and _SECRET_KEYS.search(key) and value:
            remember(value)
            return MASK
        return redact(value)
    return value


def clip(text: str, limit: int) -> str:
    """Redact first, then cut: a URL cut before its `@` would no longer look like one."""
    return redact(text)[:limit]
