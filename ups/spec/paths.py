"""Where blocks, search spaces and shipped specs are found: the user's folders in front of the shipped ones.

- Blocks (`configs/<group>/<name>.yaml`): the folders in `$UPS_CONFIGS` (separated by `os.pathsep`, front first),
  then the nearest `configs/` folder above the spec file (a project's own), then the shipped `configs/`. A block
  name resolves to the first folder that holds it, so a user's block of a shipped name wins and every other
  shipped block stays available.
- Search spaces (`<name>.yaml`): `$UPS_SEARCH_SPACES`, then the `search_spaces/` beside that project `configs/`,
  then the shipped `search_spaces/`.
- Shipped specs (`specs/<name>.yaml`): what `ups-exp run burgers` runs when `burgers` is not a file.

The shipped folders are package data in an installed wheel (`ups/shipped/`) and the checkout's own folders in an
editable install.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

GROUPS = ("stage", "data", "model", "hardware", "tracking")
"""Block groups (`configs/<group>/`)."""


def shipped_root() -> Path:
    """The folder that holds the shipped `configs/`, `search_spaces/` and `specs/`."""
    package = Path(__file__).resolve().parents[1]
    inside = package / "shipped"
    if (inside / "configs").is_dir():  # an installed wheel
        return inside
    return package.parent  # a checkout


def _from_env(var: str) -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(var, "").split(os.pathsep) if p.strip()]


def _project_configs(spec_path: Path | None) -> Path | None:
    """The nearest `configs/` above the spec that holds at least one block group."""
    if spec_path is None:
        return None
    here = Path(spec_path).resolve()
    for parent in here.parents:
        folder = parent / "configs"
        if folder.is_dir() and any((folder / g).is_dir() for g in GROUPS):
            return folder
    return None


def _unique(folders: list[Path]) -> tuple[Path, ...]:
    seen, out = set(), []
    for f in folders:
        key = f.resolve() if f.exists() else f
        if key not in seen:
            seen.add(key)
            out.append(f)
    return tuple(out)


@dataclass(frozen=True)
class ConfigPath:
    """The folders blocks and search spaces are looked up in, front first."""

    configs: tuple[Path, ...]
    search_spaces: tuple[Path, ...]

    @classmethod
    def for_spec(cls, spec_path: Path | None) -> ConfigPath:
        shipped = shipped_root()
        project = _project_configs(spec_path)
        configs = [*_from_env("UPS_CONFIGS"), *([project] if project else []), shipped / "configs"]
        spaces = [
            *_from_env("UPS_SEARCH_SPACES"),
            *([project.parent / "search_spaces"] if project else []),
            shipped / "search_spaces",
        ]
        return cls(_unique(configs), _unique(spaces))

    def block(self, group: str, name: str) -> Path | None:
        """The file of block `name` of `group`: the first folder's that has one."""
        for folder in self.configs:
            path = folder / group / f"{name}.yaml"
            if path.is_file():
                return path
        return None

    def blocks(self, group: str) -> list[str]:
        """Every block name of `group`, over all folders."""
        return sorted({p.stem for folder in self.configs for p in (folder / group).glob("*.yaml")})

    def search_space(self, name: str) -> Path | None:
        for folder in self.search_spaces:
            path = folder / f"{name}.yaml"
            if path.is_file():
                return path
        return None

    def search_space_names(self) -> list[str]:
        return sorted({p.stem for folder in self.search_spaces for p in folder.glob("*.yaml")})


def shipped_specs() -> list[str]:
    return sorted(p.stem for p in (shipped_root() / "specs").glob("*.yaml"))


def find_spec(name: str) -> Path:
    """A spec argument: a file as given when it exists, else the shipped spec of that name (`burgers`,
    `burgers.yaml`). Raises FileNotFoundError when neither exists."""
    given = Path(name).expanduser()
    if given.is_file():
        return given
    if os.sep not in name and "/" not in name:
        shipped = shipped_root() / "specs" / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
        if shipped.is_file():
            return shipped
    raise FileNotFoundError(name)
