"""The repository stands alone, and its examples work: README and docs/ point nowhere outside the repository, and
every `ups-exp` command they show parses; one on a shipped spec also resolves (a sweep, status or promote example
names a spec with a search space)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ups.cli import _split
from ups.cli_parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"[A-Z][A-Z_0-9]*|<[^>]*>|\.\.\.|\$\w+|.*\*.*")


def _commands(text: str) -> list[str]:
    """`ups-exp ...` commands in fenced blocks (continuation lines joined) and in inline code spans."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if re.search(r"(^|\s|/)ups-exp\s", line + " ") and not line.lstrip().startswith("#"):
                found.append(line)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        # a command line, not a mention of a command (`ups-exp run`) or a synopsis with [optional] parts
        if re.match(r"(\S*/)?ups-exp\s+\S+\s+\S", span) and "[" not in span:
            found.append(span)
    return found


def _argv(line: str) -> list[str]:
    tokens = shlex.split(line, comments=True)
    start = next(i for i, t in enumerate(tokens) if t == "ups-exp" or t.endswith("/ups-exp"))
    argv = tokens[start + 1 :]
    # the shell's pipe or redirection ends the command
    ends = [i for i, t in enumerate(argv) if t in ("|", ">", ">>", "2>", "&&", ";")]
    return argv[: ends[0]] if ends else argv


CASES = [(doc.relative_to(ROOT), line) for doc in DOCS for line in _commands(doc.read_text())]


def test_the_docs_show_commands():
    assert len(CASES) > 40


@pytest.mark.parametrize(("doc", "line"), CASES, ids=[f"{d}:{i}" for i, (d, _) in enumerate(CASES)])
def test_every_documented_command_parses(doc, line, monkeypatch):
    from ups.spec.load import ResolvedPipeline, load_experiment

    argv = _argv(line)
    if "--help" in argv or "-h" in argv:
        return
    args, overrides = _split(build_parser(), argv)  # a UsageError fails the test with argparse's reason
    spec = getattr(args, "spec", None)
    if spec is None or PLACEHOLDER.fullmatch(spec) or not spec.startswith("specs/"):
        return
    assert (ROOT / spec).is_file(), f"{doc}: {spec} does not exist"
    if any(PLACEHOLDER.search(o.partition("=")[2]) for o in overrides):
        return  # a placeholder value (data.path=FILE): the spec itself must still resolve
    monkeypatch.setenv("UPS_FAKE_GPUS", "8")
    resolved = load_experiment(ROOT / spec, overrides)
    if args.command in ("sweep", "status") or (args.command == "promote" and not getattr(args, "run", None)):
        assert not isinstance(resolved, ResolvedPipeline) and resolved.search_space is not None, (
            f"{doc}: `{line.strip()}`: {spec} has no search space to sweep"
        )


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_docs_point_nowhere_outside_the_repository(doc):
    text = doc.read_text()
    assert "../shared" not in text and "DESIGN.md" not in text and "FACTS.md" not in text
    assert not re.search(r"\b[Ii]ssues? #?\d+", text), re.search(r".{40}\b[Ii]ssues? #?\d+.{40}", text)
    for target in re.findall(
        r"\]\(([^)#]+)(?:#[^)]*)?\)", text
    ):  # relative links resolve inside the repository
        if not target.startswith(("http://", "https://", "mailto:")):
            assert (doc.parent / target).resolve().is_relative_to(ROOT) and (doc.parent / target).exists(), (
                target
            )
