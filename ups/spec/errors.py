"""The one user-facing error for bad specs and bad inputs."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

KEY_ALIASES = {"init.from": "init.source", "stage.from": "stage.upstream"}
"""Keys users write (`from` is a Python keyword) → the schema field that holds them."""


def schema_key(key: str) -> str:
    for written, field in KEY_ALIASES.items():
        if key == written or key.startswith(written + "."):
            return field + key[len(written) :]
    return key


def user_key(key: str) -> str:
    for written, field in KEY_ALIASES.items():
        if key == field or key.startswith(field + "."):
            return written + key[len(field) :]
    return key


class SpecError(ValueError):
    """A spec (or something it points at) is wrong.

    Rendered as ONE line: ``FILE: dotted.key: problem; got VALUE. HINT``. The CLI prints it and exits 2.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        key: str | None = None,
        got: object = ...,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.key = key
        self.got = got
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}: ")
        if self.key:
            parts.append(f"{user_key(self.key)}: ")
        parts.append(self.problem)
        if self.got is not ...:
            parts.append(f"; got {self.got!r}")
        text = "".join(parts) + "."
        if self.hint:
            text += f" {self.hint}"
        from ups.spec.redact import redact

        return redact(" ".join(text.split()))  # always one line, never a credential (a bad URL is echoed)

    def located(self, *, file: str | None = None, key: str | None = None) -> SpecError:
        """The same error, with a file/key filled in where it had none."""
        return SpecError(
            self.problem,
            file=self.file or file,
            key=self.key or key,
            got=self.got,
            hint=self.hint,
        )


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """A hint naming the closest choice (if any) and listing all of them."""
    choices = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
    listed = ", ".join(choices)
    if close:
        return f"Did you mean {close[0]!r}? Choices: {listed}"
    return f"Choices: {listed}"
