"""No credential anywhere, without a database server: the secret forms the drivers accept (a password holding
'/', a `?password=` parameter, W&B's key), given in the spec file, as command-line overrides and in the
environment, through a two-process (DDP) run with `--debug`, `show`, `--print-launch`, a bad override and a
command that fails. Nothing may hold a canary: outputs, every file of the workspace and $HOME (W&B's offline run
files included), the command line of every process ups starts, and the argv W&B records."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

from conftest import ROOT, subprocess_env, write_tiny_spec


def _argv_sampler(stop: threading.Event, seen: list[tuple[int, str]]) -> None:
    while not stop.is_set():
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                seen.append((int(cmdline.parent.name), cmdline.read_bytes().replace(b"\0", b" ").decode()))
            except (OSError, UnicodeDecodeError):
                pass
        stop.wait(0.1)


def _files_holding(folder: Path, canaries: dict[str, str]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{name} in {path}" for name, s in canaries.items() if s.encode() in data]
    return found


def _url(user: str, slash: str, query: str) -> str:
    """Both forms in one URL: a password with '/' in the userinfo, another as `?password=`."""
    return f"postgresql://{user}:{slash}@127.0.0.1:9/db?password={query}&sslmode=disable"


def test_no_canary_in_outputs_files_argv_or_wandb_records(tmp_path):
    tag = uuid.uuid4().hex[:10]
    canaries = {
        "spec slash": f"sp/{tag}a",
        "spec query": f"sq{tag}b",
        "override slash": f"ov/{tag}c",
        "override query": f"oq{tag}d",
        "env slash": f"ev/{tag}e",
        "env query": f"eq{tag}f",
        "wandb key": uuid.uuid4().hex + uuid.uuid4().hex[:8],
    }
    home, user_home = tmp_path / "home", tmp_path / "user_home"
    user_home.mkdir()
    spec = write_tiny_spec(tmp_path, name="leak", epochs=1)
    spec.write_text(
        spec.read_text()
        + f"sweep: {{storage: '{_url('s', canaries['spec slash'], canaries['spec query'])}'}}\n"
    )
    override = f"tracking.mlflow.uri={_url('o', canaries['override slash'], canaries['override query'])}"
    env = subprocess_env(
        home,
        HOME=str(user_home),
        OMP_NUM_THREADS="1",
        WANDB_API_KEY=canaries["wandb key"],
        UPS_SWEEP_STORAGE=_url("e", canaries["env slash"], canaries["env query"]),
        UPS_STORE_WAIT_S="1",
    )
    commands = [
        # spec-file secrets, environment secrets, DDP (Lightning re-executes the command line), --debug
        (["--debug", "run", str(spec), "hardware=cpu_ddp2", "--no-progress", "--json"], 0),
        # override secrets: a run whose MLflow URI is in the override (tracking off there: no server)
        (["run", str(spec), override, "tracking.mlflow.enabled=false", "--no-progress", "--json"], 0),
        (["show", str(spec), override], 0),
        (["run", str(spec), override, "--print-launch"], 0),
        (["--debug", "validate", str(spec), override, "train.lr=abc"], 2),  # a bad override, with --debug
        (["--debug", "status", str(spec), override], 1),  # fails: the storage (from the env) does not answer
        # a malformed storage URL is echoed in its error
        (
            [
                "sweep",
                str(spec),
                "search_space=operator_tiny",
                "--storage",
                f"postgresql//x:{canaries['override slash']}@127.0.0.1:9/db",
            ],
            2,
        ),
    ]
    outputs, started = [], set()
    stop, argv = threading.Event(), []
    sampler = threading.Thread(target=_argv_sampler, args=(stop, argv), daemon=True)
    sampler.start()
    try:
        for command, code in commands:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ups.cli", *command], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            started.add(
                proc.pid
            )  # the command the user typed holds what they typed; what ups starts must not
            out, err = proc.communicate(timeout=600)
            outputs.append(out + err)
            assert proc.returncode == code, f"{command}: exit {proc.returncode}\n{out[-2000:]}\n{err[-3000:]}"
    finally:
        stop.set()
        sampler.join()
    ddp_children = {pid for pid, line in argv if pid not in started and "ups.cli" in line}
    assert ddp_children, "the sampler never saw the DDP run's second process"
    assert any("***" in o for o in outputs)  # the redaction was exercised, not bypassed
    assert any("Traceback" in o for o in outputs)  # a --debug traceback was printed (and redacted)

    leaks = [f"{n} in an output" for n, s in canaries.items() if any(s in o for o in outputs)]
    leaks += [
        f"{n} in the argv of process {pid}: {line[:200]}"
        for pid, line in argv
        if pid not in started
        for n, s in canaries.items()
        if s in line
    ]
    leaks += _files_holding(home, canaries) + _files_holding(user_home, canaries)
    assert not leaks, "\n".join(sorted(set(leaks)))
    wandb_files = list((home / "wandb").rglob("*.wandb"))
    assert wandb_files, "W&B wrote its offline run files"
    recorded = b"".join(p.read_bytes() for p in wandb_files)
    assert b"hardware=cpu_ddp2" not in recorded, "W&B saw the overrides: they should be in the environment"
