"""Opening a tracking or study store: bounded, race-free, and never "absent" when it is only unreachable.

- A store that does not answer is waited for, at most `$UPS_STORE_WAIT_S` seconds (default 30), with one line
  saying so; then `StoreUnavailable` (exit 1 naming the store). MLflow alone would retry a dead database for about
  100 s per attempt, and a black-holed host for longer.
- The first use of a fresh sqlite file creates its schema under a file lock beside it (`<file>.lock`): two runs or
  sweeps started at once on a new workspace do not race MLflow's or Optuna's migrations.
- Read-only callers (`create=False`) get a one-line error for a sqlite file that does not exist, instead of a new
  empty store.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ups.spec.errors import SpecError
from ups.spec.redact import clip, redact

log = logging.getLogger(__name__)
T = TypeVar("T")

WAIT_ENV = "UPS_STORE_WAIT_S"
PROBE_TIMEOUT_S = 5.0


class StoreUnavailable(RuntimeError):
    """A tracking, registry or study store that exists but cannot be reached or read: exit 1, never "absent"."""


def wait_limit() -> float:
    try:
        return max(0.0, float(os.environ.get(WAIT_ENV, "30")))
    except ValueError:
        return 30.0


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///...` URI (None for any other store, or an in-memory sqlite)."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri.split(":", 1)[1].removeprefix("///")
    rest = rest.split("?", 1)[0]
    return Path(rest) if rest and rest != ":memory:" else None


@contextlib.contextmanager
def schema_lock(path: Path):
    """Hold `<path>.lock` (created beside the database file) while a process creates or migrates its schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def require_file(uri: str, *, what: str, key: str | None) -> None:
    """Read-only use of a sqlite store that does not exist: one line naming it (nothing is created)."""
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise SpecError(
            f"no {what} at {path} (nothing has been tracked there yet)",
            file="command line" if key and key.startswith("-") else None,
            key=key,
            got=redact(uri),
        )


def probe(uri: str) -> str | None:
    """None when the store answers within seconds, else why not. Files always answer."""
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S).close()  # noqa: S310
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                return f"HTTP {exc.code}"
            return None  # it answered (a server without /health, or one that wants a login)
        except (OSError, ValueError) as exc:
            return f"{exc.__class__.__name__}: {getattr(exc, 'reason', exc)}"
        return None
    if "://" not in uri or uri.startswith(("sqlite:", "file:", "databricks")):
        return None
    try:
        import sqlalchemy

        url = normalize_url(uri)
        args = {"connect_timeout": int(PROBE_TIMEOUT_S)} if url.startswith(("postgresql", "mysql")) else {}
        engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
        try:
            engine.connect().close()
        finally:
            engine.dispose()
    except ModuleNotFoundError:
        return None  # the driver is missing: the store's own error says which one
    except Exception as exc:  # noqa: BLE001 - any reason it does not answer
        return f"{exc.__class__.__name__}: {' '.join(str(exc).split())}"
    return None


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (SQLAlchemy would pick psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def wait_for(uri: str, *, what: str, key: str | None = None) -> None:
    """Return once the store answers; wait up to `wait_limit()` seconds (one line saying so), else raise.
    `key` (`--storage`, `tracking.mlflow.uri`...) names where the URI came from in the error."""
    why = probe(uri)
    if why is None:
        return
    limit = wait_limit()
    deadline = time.monotonic() + limit
    log.warning(
        "the %s at %s does not answer (%s); waiting up to %.0f s", what, redact(uri), clip(why, 200), limit
    )
    where = f"{key}: " if key else ""
    while time.monotonic() < deadline:
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        why = probe(uri)
        if why is None:
            return
    raise StoreUnavailable(
        f"{where}the {what} at {redact(uri)} does not answer after {limit:.0f} s: {clip(why, 300)}"
    )


def bounded(call: Callable[[], T], *, seconds: float, what: str, uri: str) -> T:
    """`call()` in a helper thread; if it has not returned within `seconds`, StoreUnavailable (the thread is left
    to finish on its own: the process exits soon after)."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="ups-store-open")
    thread.start()
    thread.join(max(seconds, PROBE_TIMEOUT_S))
    if thread.is_alive():
        raise StoreUnavailable(f"the {what} at {redact(uri)} did not open within {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def open_store(uri: str, *, key: str | None = None, create: bool = True):
    """An MlflowClient (tracking and registry) whose store answers and has its schema."""
    from mlflow.tracking import MlflowClient

    what = "MLflow store"
    path = sqlite_path(uri)
    if not create:
        require_file(uri, what=what, key=key)
    wait_for(uri, what=what, key=key)

    def make():
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # a database store creates or checks its schema here
        return client

    for attempt in range(4):
        try:
            if path is not None:
                with schema_lock(path):
                    return bounded(make, seconds=wait_limit(), what=what, uri=uri)
            return bounded(make, seconds=wait_limit(), what=what, uri=uri)
        except (StoreUnavailable, SpecError):
            raise
        except Exception as exc:
            # a database server shared by machines has no lock file: a process that loses the race to create the
            # schema (a unique violation, "already exists") finds the tables on its next try
            if attempt < 3 and lost_a_schema_race(exc):
                log.debug("opening the %s lost a schema race (%s); retrying", what, exc.__class__.__name__)
                time.sleep(0.5 * (attempt + 1))
                continue
            raise StoreUnavailable(
                f"the {what} at {redact(uri)} cannot be opened: {exc.__class__.__name__}: "
                f"{clip(' '.join(str(exc).split()), 300)}"
            ) from exc
    raise AssertionError("unreachable")


def lost_a_schema_race(exc: BaseException) -> bool:
    """What another process creating the same tables at the same moment raises: a unique violation (IntegrityError),
    a lock or connection hiccup (OperationalError), on PostgreSQL `relation ... already exists` (a ProgrammingError),
    or MLflow's wrapping of one of these; other errors (a permission denied) are real."""
    seen = exc
    for _ in range(4):  # the exception and what it wraps
        if seen is None:
            break
        name = seen.__class__.__name__
        text = str(seen)
        if name in ("IntegrityError", "OperationalError", "UniqueViolation", "DuplicateTable") or (
            "already exists" in text
        ):
            return True
        if name == "MlflowException" and ("already exists" in text or "UniqueViolation" in text):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_not_found(exc: BaseException) -> bool:
    """An MLflow answer that says "no such thing" (run, model, version, alias), as opposed to a store failure."""
    code = getattr(exc, "error_code", None)
    if code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc)


def unavailable(exc: BaseException, uri: str, what: str = "MLflow store") -> StoreUnavailable:
    """The error for a store that failed a read (anything but a not-found answer)."""
    return StoreUnavailable(
        f"the {what} at {redact(uri)} cannot be read: {exc.__class__.__name__}: "
        f"{clip(' '.join(str(exc).split()), 300)}"
    )
