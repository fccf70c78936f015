"""`ups-exp predict MODEL --input FILE --steps N --out FILE` and `ups-exp data FILE`.

predict: a registered model, a run or a checkpoint rolled out from the first frames of every trajectory of a data
file. The file is read by a format (the model's own by default) and brought to the model's grid and frame spacing
as training did; the output holds the `--context` given frames followed by `--steps` predicted ones, in PDEBench's
layout of the data's dimension (one channel: `tensor` (N, T, *grid) with `x-coordinate`, `y-coordinate` in 2D and
`t-coordinate`; 2D compressible flow: `density`, `Vx`, `Vy`, `pressure`; other 2D channel sets: per-sample groups
`0000/data` (T, X, Y, C)), with the input's attributes and per-trajectory parameters, so `ups-exp data`, the
`pdebench` format and PDEBench's own readers read it back. A steady model writes its solutions (`tensor`
(N, 1, *grid)) next to the inputs it was given. The file appears whole or not at all
(written beside the target, then renamed); an existing `--out` is refused unless `--force`.

Legend: N trajectories, T frames, C channels, *grid one or two grid axes, P PDE parameters.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ups.spec.errors import SpecError

CLI = "command line"


def _source_config(loaded, input_path: Path, fmt: str | None, task: str | None):
    """The model's training data settings for one task, pointed at `input_path` (all its trajectories and frames,
    on the model's grid and frame spacing)."""
    from ups.data.source import read_trajectories

    data = loaded.spec.data
    names = data.task_names()
    if names:
        if task is None:
            raise SpecError(
                "this model was trained on several tasks: name the one the file holds",
                file=CLI,
                key="--task",
                hint=f"Tasks: {', '.join(names)}.",
            )
        if task not in names:
            from ups.spec.errors import did_you_mean

            raise SpecError("not one of the model's tasks", file=CLI, key="--task", got=task,
                            hint=did_you_mean(task, names))  # fmt: skip
        base = data.tasks[names.index(task)]
    elif task is not None:
        raise SpecError("this model was trained on one data set; --task names a task of a multi-task model",
                        file=CLI, key="--task", got=task)  # fmt: skip
    else:
        base = data
    fmt = fmt or base.format
    options = {"allow_legacy": base.allow_legacy, **base.options}
    try:
        traj = read_trajectories(fmt, input_path, options, key="--")
    except SpecError as exc:
        raise SpecError(exc.problem, file=CLI, key="--input", got=str(input_path), hint=exc.hint) from None
    grid = loaded.io.grid
    return dataclasses.replace(
        base,
        path=str(input_path),
        format=fmt,
        num_trajectories=int(traj.states.shape[0]),
        # points per axis; a non-square grid was trained at the file's own (null), checked after reading
        num_points=int(grid[0]) if len(set(grid)) == 1 else None,
        num_frames=None,
    )


def _read_input(loaded, input_path: Path, fmt: str | None, task: str | None, home: Path):
    from ups.data.source import load_source

    if not input_path.is_file():
        raise SpecError("no such file", file=CLI, key="--input", got=str(input_path))
    cfg = _source_config(loaded, input_path, fmt, task)
    try:
        source = load_source(cfg, home, key="data.")
    except SpecError as exc:
        where = (exc.key or "").removeprefix("data.")
        flag = {"num_points": "the model's grid", "dt": "the model's frame spacing"}.get(where)
        problem = f"{exc.problem} ({flag})" if flag else exc.problem
        raise SpecError(problem, file=CLI, key="--input", got=str(input_path), hint=exc.hint) from None
    have = (len(source.channels), source.grid)
    want = (loaded.io.out_channels, tuple(loaded.io.grid))
    if have != want:
        raise SpecError(
            f"the model takes {want[0]} channel(s) on a {want[1]} grid; the file gives {have[0]} on {have[1]}",
            file=CLI,
            key="--input",
            got=str(input_path),
        )
    return source


def predict(
    model: str,
    *,
    input_path: Path,
    out: Path,
    steps: int | None,
    context: int | None,
    fmt: str | None,
    task: str | None,
    force: bool,
    home: Path,
    tracking_uri: str | None,
) -> dict[str, Any]:
    import torch

    from ups.loading import load

    input_path, out = Path(input_path).expanduser(), Path(out).expanduser()
    if out.exists() and not force:
        raise SpecError("the output file exists", file=CLI, key="--out", got=str(out),
                        hint="Pass --force to replace it.")  # fmt: skip
    if out.exists() and out.resolve() == input_path.resolve():
        raise SpecError("--out must not be the input file", file=CLI, key="--out", got=str(out))
    if out.is_dir():
        raise SpecError("is a folder; give a file name", file=CLI, key="--out", got=str(out))
    loaded = load(model, home=home, tracking_uri=tracking_uri)
    steady = loaded.stage.steady
    if not steady and (steps is None or steps < 1):
        raise SpecError("must be >= 1 (the frames to predict)", file=CLI, key="--steps", got=steps)
    source = _read_input(loaded, input_path, fmt, task, home)
    predictor = loaded.predictor()
    params = torch.from_numpy(source.vectors(tuple(loaded.layout)))  # (N, P)
    size = loaded.spec.eval.batch_size
    torch.manual_seed(0)  # a refiner's noise: the same file and model give the same prediction
    with torch.no_grad():
        if steady:
            if source.inputs is None:
                raise SpecError("a steady model needs a file of inputs (its `inputs` datasets)", file=CLI,
                                key="--input", got=str(input_path))  # fmt: skip
            inputs = torch.from_numpy(source.inputs)  # (N, C_in, *grid)
            frames = torch.cat(
                [predictor(inputs[i : i + size], params[i : i + size]) for i in range(0, len(inputs), size)]
            )[:, None]  # (N, 1, C, *grid)
            given = 0
        else:
            states = torch.from_numpy(source.states)  # (N, T, C, *grid)
            given = context if context is not None else loaded.spec.eval.context_frames
            if not 1 <= given <= states.shape[1]:
                raise SpecError(f"must be between 1 and the file's {states.shape[1]} frames", file=CLI,
                                key="--context", got=given)  # fmt: skip
            dt = torch.full((states.shape[0],), source.dt)
            rolled = torch.cat(
                [
                    predictor.rollout(
                        states[i : i + size, given - 1], params[i : i + size], dt[i : i + size], steps
                    )
                    for i in range(0, states.shape[0], size)
                ]
            )  # (N, steps, C, *grid)
            frames = torch.cat([states[:, :given], rolled], dim=1)
    written = _write(out, frames.numpy(), source, input_path, model=model, context=given, steady=steady)
    return {
        "out": str(out),
        "model": model,
        "input": str(input_path),
        "trajectories": int(frames.shape[0]),
        "frames": int(frames.shape[1]),
        "context": given,
        "steps": 0 if steady else int(steps),
        "dt": source.dt,
        "stage": loaded.stage.kind,
        **written,
    }


CFD_CHANNELS = ("density", "Vx", "Vy", "pressure")
"""PDEBench's 2D compressible-flow channels, each its own (N, T, X, Y) dataset."""


def _write(out: Path, frames: np.ndarray, source, input_path: Path, *, model: str, context: int,
           steady: bool) -> dict:  # fmt: skip
    """PDEBench's layout of the data's dimension: one channel as `tensor` (N, T, *grid); 2D compressible-flow
    channels as their own datasets; other 2D channel sets as per-sample groups `0000/data` (T, X, Y, C)."""
    import h5py

    n, t, c, *grid = frames.shape
    cfd = len(grid) == 2 and tuple(source.channels) == CFD_CHANNELS
    if c != 1 and len(grid) == 1:
        raise SpecError(
            f"writing {c}-channel 1D predictions is not supported (PDEBench's 1D layout holds one field)",
            file=CLI,
            key="--out",
        )
    times = np.arange(t, dtype=np.float64) * (source.dt if not steady else 1.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    try:
        with h5py.File(tmp, "w") as f:
            if c == 1 or cfd:
                for i, name in enumerate(CFD_CHANNELS if cfd else ("tensor",)):
                    f.create_dataset(name, data=frames[:, :, i].astype(np.float32))  # (N, T, *grid)
                for axis, coords in zip("xy", source.coords):
                    f.create_dataset(f"{axis}-coordinate", data=np.asarray(coords, dtype=np.float64))
                f.create_dataset("t-coordinate", data=times)
                layout = (
                    f"{', '.join(CFD_CHANNELS) if cfd else 'tensor'} (N, T, {', '.join('XY'[: len(grid)])})"
                )
            else:
                for i in range(n):
                    group = f.create_group(f"{i:04d}")
                    group.create_dataset("data", data=np.moveaxis(frames[i], 1, -1).astype(np.float32))
                    for axis, coords in zip("xy", source.coords):
                        group.create_dataset(f"grid/{axis}", data=np.asarray(coords, dtype=np.float64))
                    group.create_dataset("grid/t", data=times)
                layout = "groups 0000…/data (T, X, Y, C)"
            if source.family:
                f.attrs["equation"] = source.family
            for name, value in source.params.items():
                f.attrs[_attr_name(source.family, name)] = value
            for name, values in source.trajectory_params.items():
                f.create_dataset(name, data=np.asarray(values))
            if steady and source.inputs is not None:
                names = [x for x in source.input_channels if x] or [
                    f"input{i}" for i in range(source.inputs.shape[1])
                ]
                for i, name in enumerate(names):
                    f.create_dataset(name, data=source.inputs[:, i])
                f.attrs["inputs"] = ",".join(names)
            f.attrs["channels"] = ",".join(source.channels)
            f.attrs["periodic"] = bool(source.periodic)
            f.attrs["ups_model"] = model
            f.attrs["ups_input"] = str(input_path)
            f.attrs["ups_context_frames"] = context
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"layout": layout}


def _attr_name(family: str | None, param: str) -> str:
    """A parameter's attribute as the family's files spell it (`nu` → `Nu`), so the `pdebench` format reads it
    back."""
    from ups import catalog

    for p in catalog.get("families", family).params if family else ():
        if p.name == param and p.file_attr:
            return p.file_attr
    return param


def describe(path: Path, fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    """`ups-exp data FILE`: what `fmt` reads from the file, without training."""
    from ups import catalog
    from ups.data.source import read_trajectories

    path = Path(path).expanduser()
    if not path.is_file():
        raise SpecError("no such file", file=CLI, key="FILE", got=str(path))
    try:
        traj = read_trajectories(fmt, path, options, key="--")
    except SpecError as exc:
        raise SpecError(exc.problem, file=CLI, key=exc.key or "FILE", got=str(path), hint=exc.hint) from None
    n, t, c, *grid = (int(s) for s in traj.states.shape)
    params: dict[str, Any] = {}
    for name, value in traj.params.items():
        arr = np.asarray(value, dtype=np.float64)
        params[name] = (
            float(arr)
            if arr.ndim == 0
            else {"per_trajectory": True, "min": float(arr.min()), "max": float(arr.max())}
        )
    family = traj.family
    solver = bool(family and catalog.get("families", family).solver)
    return {
        "file": str(path),
        "format": fmt,
        "kind": "steady" if traj.inputs is not None else "trajectories",
        "trajectories": n,
        "frames": t,
        "channels": list(traj.channels),
        "grid": grid,
        "coords": [[float(np.min(x)), float(np.max(x))] for x in traj.coords],
        "dt": float(traj.dt),
        "params": params,
        "family": family,
        "solver_baseline": solver,
        "inputs": None if traj.inputs is None else list(np.shape(traj.inputs)),
    }


def describe_lines(info: dict[str, Any]) -> list[str]:
    grid = " x ".join(map(str, info["grid"]))
    lines = [
        f"{info['file']} (format {info['format']}): {info['kind']}",
        f"  trajectories {info['trajectories']}, frames {info['frames']} every dt = {info['dt']:g}, "
        f"channels {', '.join(info['channels'])}, grid {grid} "
        f"({', '.join(f'[{a:g}, {b:g}]' for a, b in info['coords'])})",
    ]
    if info["inputs"] is not None:
        lines.append(f"  inputs {tuple(info['inputs'])}")
    for name, value in info["params"].items():
        shown = (
            f"{value['min']:g} … {value['max']:g} (per trajectory)"
            if isinstance(value, dict)
            else f"{value:g}"
        )
        lines.append(f"  {name} = {shown}")
    if info["family"]:
        extra = "" if info["solver_baseline"] else " (no solver baseline)"
        lines.append(f"  family {info['family']}{extra}")
    else:
        lines.append(
            "  family: none (the file does not say; no solver for this data unless data.family names one)"
        )
    return lines
