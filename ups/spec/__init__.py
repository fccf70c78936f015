"""Typed experiment specs: schemas, composition of blocks, overrides. Torch-free."""

from ups.spec.errors import SpecError

__all__ = ["SpecError"]
