"""What reads and writes model files never guesses: the best checkpoint is the one whose metrics were logged, a
corrupt file is refused, an export never half-overwrites a folder, a reserved alias registers nothing, and a
registry or store that fails is never read as "absent" (no gate passes on it, no alias moves)."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, isolate, mlflow_client, write_tiny_spec

from ups.cli import main
from ups.spec import SpecError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run that keeps 3 checkpoints and ranks them by a metric that never improves after epoch 0, so its
    best checkpoint (epoch000) is not its newest (epoch002)."""
    from ups.run.single import run_spec
    from ups.spec.load import load_spec

    folder = tmp_path_factory.mktemp("modelfiles")
    home = folder / "home"
    (folder / "user_home").mkdir()
    spec = write_tiny_spec(folder, name="mf", epochs=3)
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, home, folder / "user_home")
        overrides = ["train.save_top_k=3", "train.checkpoint_metric=val/persistence_nrmse"]
        result = run_spec(load_spec(spec, overrides), progress_bar=False)
    return {"spec": spec, "home": home, "run_id": result.run_id, "overrides": overrides, "folder": folder}


@pytest.fixture
def home(trained, monkeypatch):
    isolate(monkeypatch, trained["home"], trained["folder"] / "user_home")
    return trained["home"]


def test_the_best_checkpoint_is_the_logged_one_not_the_newest(trained, home):
    from ups.loading import best_checkpoint, run_checkpoint

    ckpts = home / "runs" / trained["run_id"] / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("epoch*.ckpt")) == [
        "epoch000.ckpt",
        "epoch001.ckpt",
        "epoch002.ckpt",
    ]
    assert run_checkpoint(trained["run_id"], home=home) == ckpts / "epoch000.ckpt"
    record = json.loads((home / "runs" / trained["run_id"] / "run.json").read_text())
    assert record["best_checkpoint"] == str(ckpts / "epoch000.ckpt")
    # a run folder from before the best was recorded: Lightning's own record in last.ckpt says which
    older = trained["folder"] / "older_run"
    (older / "checkpoints").mkdir(parents=True)
    for p in ckpts.iterdir():
        (older / "checkpoints" / p.name).write_bytes(p.read_bytes())
    (older / "run.json").write_text(json.dumps({k: v for k, v in record.items() if k != "best_checkpoint"}))
    assert best_checkpoint(older).name == "epoch000.ckpt"
    # what export writes is that checkpoint's predictor
    out = trained["folder"] / "export-best"
    assert main(["export", trained["run_id"], "--out", str(out)]) == 0
    best = torch.load(ckpts / "epoch000.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    with np.load(out / "weights.npz", allow_pickle=False) as w:
        weights = {k.removeprefix("model."): v for k, v in best.items() if k.startswith("model.")}
        assert sorted(w.files) == sorted(weights)
        for k in w.files:
            assert np.array_equal(w[k], weights[k].numpy()), k


def _flip_a_tensor_byte(path: Path) -> None:
    """Change one byte inside the largest tensor record of a torch checkpoint (a zip of stored entries)."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = (int.from_bytes(data[info.header_offset + k : info.header_offset + k + 2], "little")
                           for k in (26, 28))  # fmt: skip
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0x55
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_refused_and_an_old_checkpoint_loads_with_one_warning(
    trained, home, capsys, caplog
):
    from ups.loading import _warned, from_checkpoint

    best = home / "runs" / trained["run_id"] / "checkpoints" / "epoch000.ckpt"
    assert (best.parent / "epoch000.ckpt.sha256").is_file()
    corrupt = trained["folder"] / "corrupt" / "epoch000.ckpt"
    corrupt.parent.mkdir()
    corrupt.write_bytes(best.read_bytes())
    (corrupt.parent / "epoch000.ckpt.sha256").write_bytes((best.parent / "epoch000.ckpt.sha256").read_bytes())
    _flip_a_tensor_byte(corrupt)
    torch.load(corrupt, map_location="cpu", weights_only=True)  # torch itself does not notice
    capsys.readouterr()
    assert main(["export", str(corrupt), "--out", str(trained["folder"] / "never")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "corrupt" in err and str(corrupt) in err, err
    assert not (trained["folder"] / "never").exists()

    old = trained["folder"] / "old" / "epoch000.ckpt"  # written before checksums: no sidecar
    old.parent.mkdir()
    old.write_bytes(best.read_bytes())
    _warned.clear()
    logger = logging.getLogger("ups.loading")
    logger.addHandler(caplog.handler)  # `ups` does not propagate once the CLI configured it
    try:
        from_checkpoint(old)
        from_checkpoint(old)
    finally:
        logger.removeHandler(caplog.handler)
    warnings = [r for r in caplog.records if "no recorded checksum" in r.getMessage()]
    assert len(warnings) == 1

    # an export records its weights' checksum, and a tampered export is refused too
    out = trained["folder"] / "export-sum"
    assert main(["export", str(best), "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["sha256"]["weights.npz"]
    weights = bytearray((out / "weights.npz").read_bytes())
    weights[len(weights) // 2] ^= 0x01
    (out / "weights.npz").write_bytes(bytes(weights))
    from ups.loading import from_export

    with pytest.raises(SpecError, match="corrupt"):
        from_export(out)


def test_export_refuses_a_folder_that_is_not_empty_and_never_half_writes(trained, home, capsys, monkeypatch):
    out = trained["folder"] / "export-dir"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["export", trained["run_id"], "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "notes.txt").read_text() == "mine"
    assert main(["export", trained["run_id"], "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "weights.npz"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    import ups.registry.export as export_module

    def broken_json(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export_module.json, "dumps", broken_json)  # the config fails after the weights
    assert main(["export", trained["run_id"], "--out", str(out), "--force"]) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old export, whole
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".export-dir")]  # no staging left


def test_a_reserved_alias_is_refused_before_anything_is_registered(trained, home, capsys):
    spec = str(trained["spec"])
    args = [
        "promote",
        spec,
        "--run",
        trained["run_id"],
        *trained["overrides"],
        "registry.model_name=aliasing",
    ]
    for alias in ("v1", "V12", "latest", "bad/alias"):
        assert main([*args, "--alias", alias]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--alias" in err, err
    assert mlflow_client(home).search_registered_models("name='aliasing'") == []


class _Answers503(http.server.BaseHTTPRequestHandler):
    def _reply(self) -> None:
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b"service unavailable")

    do_GET = do_POST = _reply

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def registry_503():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers503)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_registry_that_cannot_be_read_is_never_absent(trained, home, capsys, monkeypatch, registry_503):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    spec = str(trained["spec"])
    args = [
        "promote",
        spec,
        "--run",
        trained["run_id"],
        *trained["overrides"],
        "registry.model_name=failclosed",
    ]
    missing = ["promote", spec, "--run", "f" * 32, *trained["overrides"]]
    assert main(missing) == 2 and "no such MLflow run" in capsys.readouterr().err  # a store that answers "no"
    assert main(args) == 0  # v1 is champion
    client = mlflow_client(home)
    assert {k: str(v) for k, v in client.get_registered_model("failclosed").aliases.items()} == {
        "champion": "1"
    }
    capsys.readouterr()

    def unavailable(self, name, alias):
        raise MlflowException("503 Service Unavailable", error_code="TEMPORARILY_UNAVAILABLE")

    with monkeypatch.context() as mp:
        mp.setattr(MlflowClient, "get_model_version_by_alias", unavailable)
        assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be read" in err and "MLflow registry" in err, err
    aliases = {k: str(v) for k, v in client.get_registered_model("failclosed").aliases.items()}
    assert aliases == {"champion": "1"}  # nothing moved, nothing dropped
    assert len(client.search_model_versions("name='failclosed'")) == 1  # nothing registered

    # a store that answers 503 (or not at all) is exit 1 naming it, not "no such run" / "no checkpoint"
    monkeypatch.setenv("UPS_STORE_WAIT_S", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_503)
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "does not answer" in err and registry_503 in err, err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert main(["export", "f" * 32, "--out", str(trained["folder"] / "x"), "--tracking-uri", closed]) == 1
    assert "does not answer" in capsys.readouterr().err


def test_eval_of_something_that_is_not_a_model_is_one_line_and_leaves_no_temp_folder(trained, home, capsys):
    before = {p.name for p in Path(tempfile.gettempdir()).glob("ups-*")}
    empty = trained["folder"] / "empty-model"
    empty.mkdir()
    junk = trained["folder"] / "junk.ckpt"
    torch.save({"weights": torch.zeros(3)}, junk)
    best = home / "runs" / trained["run_id"] / "checkpoints" / "epoch000.ckpt"
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    ckpt["state_dict"] = {k: v[..., :1] if v.ndim else v for k, v in ckpt["state_dict"].items()}
    misfit = trained["folder"] / "misfit.ckpt"
    torch.save(ckpt, misfit)
    from ups.loading import write_checksum

    write_checksum(misfit)  # intact, just not this architecture
    cases = [
        (empty, "not a ups model"),
        (junk, "not a ups checkpoint"),
        (misfit, "do not fit"),
        (trained["folder"] / "missing.ckpt", "no such checkpoint"),
    ]
    for source, message in cases:
        assert main(["eval", str(trained["spec"]), "--model", str(source)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err and "--model" in err, err
    assert {p.name for p in Path(tempfile.gettempdir()).glob("ups-*")} == before
    assert ROOT.is_dir()
