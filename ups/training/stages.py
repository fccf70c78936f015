"""The training side of a catalogue stage row: its LightningModule, its predictor builder, and how the module's
state maps onto the predictor's. Rows are plain data (ups.catalog); nothing here dispatches on a stage's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from ups import catalog
from ups.spec.errors import SpecError
from ups.spec.stages import REFERENCE

__all__ = ["REFERENCE", "Stage", "plain_key", "stage_named", "stage_of"]

WRAPPER_SEGMENTS = ("_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")
"""What torch.compile's, FSDP's and activation checkpointing's wrappers add to a parameter's name."""


def plain_key(key: str) -> str:
    """A state-dict key as the unwrapped network names it (what checkpoints hold, whatever trained them)."""
    for segment in WRAPPER_SEGMENTS:
        key = key.replace(segment, "")
    return key


@dataclass(frozen=True)
class Stage:
    row: catalog.StageRow

    @property
    def kind(self) -> str:
        return self.row.name

    @property
    def consumes(self) -> tuple[str, ...]:
        return self.row.consumes

    @property
    def steady(self) -> bool:
        return self.row.steady

    @property
    def predictor(self) -> str:
        return self.row.predictor

    def metric_names(self, spec) -> list[str]:
        return catalog.load(self.row.metric_names)(spec)

    def predictor_state(self, module_state: dict) -> dict:
        out = {}
        for key, value in module_state.items():
            key = plain_key(key)  # a compile or FSDP wrapper never leaks into a loaded key
            for prefix, target in self.row.state:
                if key.startswith(prefix):
                    out[target + key[len(prefix) :]] = value
        return out

    def load(self, attr: str):
        """The object the row names under `module` (the LightningModule) or `predictor` (its builder)."""
        return catalog.load(getattr(self.row, attr))


def stage_named(kind: str, *, file: str | None = None, key: str = "stage.kind") -> Stage:
    try:
        return Stage(catalog.get("stages", kind))
    except catalog.CatalogError as exc:
        raise SpecError(exc.problem, file=file, key=key, got=exc.got, hint=exc.hint) from None


def stage_of(spec) -> Stage:
    return stage_named(spec.stage.kind)
