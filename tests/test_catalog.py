"""The catalogue is complete and the import layers hold.

- Every row of every table is complete (its required parts named) and everything it names loads: a new stage,
  model, family, format or metric is its implementation plus its row, and a row that names something missing fails
  here.
- Import layers (ups/catalog.py and ups/plugin.py at the bottom): the catalogue imports nothing else of ups;
  `ups/spec` imports only the catalogue, the plugin contract and itself; `ups/models` never imports the spec layer
  (models get plain values) nor training; nothing outside the catalogue names a built-in family, stage or model
  kind in code (they are data in its rows).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from ups import catalog

PACKAGE = Path(__file__).resolve().parents[1] / "ups"
ROWS = [(table, name) for table in catalog.TABLES for name in catalog.rows(table)]


@pytest.mark.parametrize(("table", "name"), ROWS, ids=[f"{t}:{n}" for t, n in ROWS])
def test_every_row_is_complete_and_loads(table, name):
    row = catalog.get(table, name)
    assert row.name == name and row.source
    if table == "stages":
        config = catalog.load(row.config)
        assert dataclasses.is_dataclass(config) and config().kind == name
        assert inspect.isclass(catalog.load(row.module))
        assert callable(catalog.load(row.predictor)) and callable(catalog.load(row.metric_names))
        assert all(c in catalog.rows("stages") for c in row.consumes)
        assert row.state and all(isinstance(p, str) and isinstance(t, str) for p, t in row.state)
    elif table == "models":
        build = catalog.load(row.build)
        assert callable(build)
        config = catalog.load(row.config) if row.config else getattr(build, "Config", None)
        assert config is not None and dataclasses.is_dataclass(config)
        assert callable(getattr(config(), "check", None))
    elif table == "families":
        for part in (row.generator, row.solver, row.checks, row.steady_baseline):
            if part:
                assert callable(catalog.load(part)), part
        assert row.generator or row.recognize, "a family needs a generator or a way to recognize its files"
        assert row.spatial_dims in (1, 2) and row.channels
        for p in row.params:
            from ups.data.params import _SCALED

            assert p.feature is None or p.feature in _SCALED, p
    elif table == "formats":
        assert callable(catalog.load(row.read))
    else:
        assert row.fn is None or callable(catalog.load(row.fn))
        assert row.direction() in ("minimize", "maximize")
    assert row.description


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n == "ups" or n.startswith("ups.")}


def _files(sub: str) -> list[Path]:
    folder = PACKAGE / sub
    return [folder] if folder.suffix == ".py" else sorted(folder.rglob("*.py"))


LAYERS = {
    "catalog.py": {"ups.plugin"},
    "plugin.py": set(),
    "spec": {"ups.catalog", "ups.plugin", "ups"},
    "models": {"ups.plugin", "ups"},
}
"""What each layer may import from ups, besides itself."""


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_import_layers_hold(layer):
    own = f"ups.{layer.removesuffix('.py')}"
    bad = []
    for path in _files(layer):
        for name in _imports(path):
            if name == own or name.startswith(own + "."):
                continue
            if name not in LAYERS[layer] and not any(
                name.startswith(a + ".") for a in LAYERS[layer] if a != "ups"
            ):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not bad, "\n".join(bad)


def test_no_code_outside_the_catalogue_names_a_built_in_family_stage_or_model():
    """Built-in names are rows, not branches: a string literal equal to one appears only in the catalogue (and in
    the data generators that write their own family's name into the files they make)."""
    names = {n for t in ("families", "stages", "models") for n in catalog.rows(t)} | {"operator"}
    # a stage's own module may name the stages it consumes (its reference predictors); the spec schema names
    # the default blocks (data, not branches)
    stage_modules = {catalog.rows("stages")[n].module.partition(":")[0] for n in catalog.rows("stages")}
    allowed = {"catalog.py", "data/burgers.py", "data/advection.py", "data/reaction_diffusion.py", "data/ks.py",
               "data/steady.py", "data/ns2d.py", "data/darcy2d.py", "spec/models.py", "spec/stages.py", "spec/schema.py"}  # fmt: skip
    allowed |= {m.removeprefix("ups.").replace(".", "/") + ".py" for m in stage_modules}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if rel in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)
