"""Generated data sets, cached under `$UPS_HOME/data/` and keyed by a hash of their generator parameters."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from ups.data.pdebench import GeneratedData, file_checksum, write_pdebench

log = logging.getLogger(__name__)


def cache_key(params: dict) -> str:
    """The first 12 hex digits of the sha256 of `params` as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def generated_file(home: Path, params: dict, make: Callable[[], GeneratedData]) -> Path:
    """The file `make()` generates for `params` (which must name its `family`), made at most once.

    `params` should hold everything the numbers depend on, the generator's version included. Several processes
    asking for the same file at once serialise on a lock file beside it: the first generates, the others wait
    and then find the file. Files are written atomically, so a crash never leaves a truncated one behind.
    """
    family = params.get("family")
    if not isinstance(family, str) or not family:
        raise ValueError(f"`params` must name the data `family`, got {params!r}")
    folder = Path(home) / "data"
    path = folder / f"{family}-{cache_key(params)}.h5"
    if path.is_file() and _intact(path, params, remove=False):
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:  # "a": create without truncating
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (
                path.is_file() and _intact(path, params, remove=True)
            ):  # made by another process meanwhile?
                log.info("generating %s for %s", path.name, params)
                data = make()
                attrs = {**data.attrs, "cache_params": json.dumps(params, sort_keys=True)}
                write_pdebench(
                    path,
                    tensor=data.tensor,
                    x=data.x,
                    t=data.t,
                    attrs=attrs,
                    datasets=data.datasets,
                    y=data.y,
                )
                _checksum_file(path).write_text(file_checksum(path) + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


def _checksum_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _intact(path: Path, params: dict, *, remove: bool) -> bool:
    """The cached file is what `params` generate: its sha256 matches the one stored when it was written, and its
    `cache_params` attribute is `params`. With `remove` (under the lock), a corrupt or foreign file is deleted so
    that the caller generates it again."""
    stored = _checksum_file(path)
    problem = None
    if not stored.is_file():
        problem = "no stored checksum"
    elif stored.read_text().strip() != file_checksum(path):
        problem = "its checksum does not match the one stored when it was generated"
    else:
        try:
            import h5py

            with h5py.File(path, "r") as f:
                have = f.attrs.get("cache_params")
            if have is None or json.loads(have) != json.loads(json.dumps(params, sort_keys=True)):
                problem = "it was generated for other parameters"
        except (OSError, ValueError) as exc:
            problem = f"it cannot be read ({exc.__class__.__name__})"
    if problem is None:
        return True
    if not remove:
        return False
    log.warning("cached data %s is not usable (%s): generating it again", path, problem)
    path.unlink(missing_ok=True)
    stored.unlink(missing_ok=True)
    return False
