"""The `pdebench` format's 2D layouts: ups's own `tensor` files (trajectories and steady), PDEBench's compressible
CFD, per-sample groups (diffusion–reaction, shallow water) and Darcy flow; lazy reads and one-line errors.

Grids are 16 × 8 (X × Y) so a swapped axis fails, and every value says its trajectory, frame, channel and point.
"""

import pickle

import h5py
import numpy as np
import pytest

from ups import catalog
from ups.data.formats.pdebench import read
from ups.data.pdebench import write_pdebench
from ups.spec.errors import SpecError
from ups.testing import check_format

X = (np.arange(16) + 0.5) / 16
Y = (np.arange(8) + 0.5) / 8


def field(*shape: int) -> np.ndarray:
    """Distinct float32 values: each entry is its flat index."""
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def cfd_file(path, *, n=3, frames=4, drop=(), extra=None, attrs=None):
    """PDEBench's 2D CFD layout; returns the states it holds, (N, T, 4, X, Y)."""
    states = field(n, frames, 4, 16, 8)
    with h5py.File(path, "w") as f:
        for c, name in enumerate(("density", "Vx", "Vy", "pressure")):
            if name not in drop:
                f.create_dataset(name, data=states[:, :, c])
        f.create_dataset("x-coordinate", data=X.astype(np.float32))
        f.create_dataset("y-coordinate", data=Y.astype(np.float32))
        f.create_dataset("t-coordinate", data=np.arange(frames + 1, dtype=np.float32) * 0.05)
        for name, value in (extra or {}).items():
            f.create_dataset(name, data=value)
        f.attrs.update(attrs or {})
    return states


def group_file(path, *, n=4, frames=5, channels=2, shapes=None):
    """PDEBench's per-sample groups; returns the states they hold, (N, T, C, X, Y)."""
    data = field(n, frames, 16, 8, channels)  # (N, T, X, Y, C) as stored
    with h5py.File(path, "w") as f:
        for i in range(n):
            group = f.create_group(f"{i:04d}")
            group.create_dataset("data", data=(shapes or {}).get(i, data[i]))
            group.create_dataset("grid/x", data=X.astype(np.float32))
            group.create_dataset("grid/y", data=Y.astype(np.float32))
            group.create_dataset("grid/t", data=np.arange(frames, dtype=np.float32) * 0.25)
    return np.moveaxis(data, -1, 2)


def darcy_file(path, *, n=4, nu_shape=None):
    """PDEBench's Darcy layout; returns (nu (N, X, Y), tensor (N, 1, X, Y))."""
    nu, tensor = field(n, 16, 8) + 1, -field(n, 1, 16, 8)
    with h5py.File(path, "w") as f:
        f.create_dataset("nu", data=nu if nu_shape is None else np.zeros(nu_shape, np.float32))
        f.create_dataset("tensor", data=tensor)
        f.create_dataset("x-coordinate", data=X.astype(np.float32))
        f.create_dataset("y-coordinate", data=Y.astype(np.float32))
    return nu, tensor


def assert_closed(path):
    """No handle stays open: HDF5 refuses to open a file for writing while it is open for reading."""
    with h5py.File(path, "r+"):
        pass


def test_ups_2d_trajectories(tmp_path):
    tensor = field(5, 4, 16, 8)
    path = tmp_path / "ns.h5"
    t = np.arange(5, dtype=np.float32) * 0.1
    write_pdebench(path, tensor=tensor, x=X, y=Y, t=t, attrs={"channels": "w", "equation": "ns2d"})
    traj = check_format(read, path)
    assert traj.states.shape == (5, 4, 1, 16, 8) and traj.channels == ("w",)
    assert traj.dt == pytest.approx(0.1) and traj.inputs is None
    np.testing.assert_allclose(traj.coords[0], X, rtol=1e-6)
    np.testing.assert_allclose(traj.coords[1], Y, rtol=1e-6)
    assert traj.family in (None, "ns2d")  # ups's own 2D family, once the catalogue has it
    np.testing.assert_array_equal(traj.states[1:3], tensor[1:3, :, None])
    np.testing.assert_array_equal(traj.states[[4, 0, 4]], tensor[[4, 0, 4], :, None])
    np.testing.assert_array_equal(traj.states[-1], tensor[-1:, :, None])

    plain = tmp_path / "plain_Burgers_2d.h5"  # a 1D family's name pattern does not claim 2D data
    write_pdebench(plain, tensor=tensor, x=X, y=Y, t=t, attrs={})
    traj = read(str(plain), {})
    assert (traj.family, traj.params, traj.channels) == (None, {}, ("u",))
    assert "periodic" not in traj.attrs
    assert_closed(plain)


def test_ups_2d_steady(tmp_path):
    tensor, a, f = field(4, 1, 16, 8), field(4, 16, 8) + 100, field(4, 16, 8) + 1000
    path = tmp_path / "darcy.h5"
    write_pdebench(
        path,
        tensor=tensor,
        x=X,
        y=Y,
        t=np.zeros(2, np.float32),
        attrs={"equation": "darcy2d", "inputs": "a,f"},
        datasets={"a": a, "f": f},
    )
    traj = check_format(read, path)
    assert traj.states.shape == (4, 1, 1, 16, 8) and traj.dt == 1.0
    assert traj.inputs.shape == (4, 2, 16, 8) and traj.attrs["inputs"] == "a,f"
    np.testing.assert_array_equal(traj.inputs[1:3], np.stack([a, f], axis=1)[1:3])
    assert traj.family in (None, "darcy2d")


def test_cfd(tmp_path):
    path = tmp_path / "2D_CFD_Rand_M0.1_Eta0.01_Zeta1e-08_periodic_128_Train.hdf5"
    states = cfd_file(path)
    traj = check_format(read, path)
    assert traj.states.shape == (3, 4, 4, 16, 8)
    assert traj.channels == ("density", "Vx", "Vy", "pressure")
    assert traj.params == {"M": 0.1, "eta": 0.01, "zeta": 1e-08}
    assert traj.family is None and traj.attrs["periodic"] is True and traj.inputs is None
    assert traj.dt == pytest.approx(0.05)
    np.testing.assert_allclose(traj.coords[0], X, rtol=1e-6)
    np.testing.assert_array_equal(traj.states[1:3], states[1:3])
    np.testing.assert_array_equal(traj.states[np.array([2, 0])], states[[2, 0]])
    again = pickle.loads(pickle.dumps(traj.states))
    np.testing.assert_array_equal(again[0:2], states[0:2])
    assert_closed(path)

    named = tmp_path / "2D_CFD_M0.1_Eta0.01.hdf5"  # attributes win over the name; no `periodic`: the default
    cfd_file(named, attrs={"M": 0.5, "zeta": 0.2})
    traj = read(str(named), {})
    assert traj.params == {"M": 0.5, "eta": 0.01, "zeta": 0.2} and "periodic" not in traj.attrs


@pytest.mark.parametrize(
    ("name", "channels", "names", "periodic"),
    [
        ("2D_diff-react_NA_NA.h5", 2, ("u", "v"), False),
        ("2D_rdb_NA_NA.h5", 1, ("h",), False),
        ("samples.h5", 3, ("c0", "c1", "c2"), None),
    ],
)
def test_groups(tmp_path, name, channels, names, periodic):
    path = tmp_path / name
    states = group_file(path, channels=channels)
    traj = check_format(read, path)
    assert traj.states.shape == (4, 5, channels, 16, 8) and traj.channels == names
    assert traj.attrs.get("periodic") is periodic and traj.family is None and traj.params == {}
    assert traj.dt == pytest.approx(0.25)
    np.testing.assert_allclose(traj.coords[1], Y, rtol=1e-6)
    np.testing.assert_array_equal(traj.states[1:3], states[1:3])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(traj.states))[[3, 1]], states[[3, 1]])
    assert_closed(path)


def test_groups_read_only_the_groups_asked_for(tmp_path):
    """A middle group of another shape passes the open-time check (first and last), and fails when read."""
    path = tmp_path / "2D_rdb_NA_NA.h5"
    states = group_file(path, channels=1, shapes={2: np.zeros((5, 16, 7, 1), np.float32)})
    traj = read(str(path), {})
    np.testing.assert_array_equal(traj.states[0:2], states[0:2])
    with pytest.raises(
        SpecError, match=r"group `0002` holds `data` \(5, 16, 7, 1\), unlike the first group's"
    ):
        traj.states[1:3]


@pytest.mark.parametrize(
    ("name", "beta"),
    [
        ("2D_DarcyFlow_beta1.0_Train.hdf5", 1.0),
        ("2D_DarcyFlow_beta0.1_Train.hdf5", 0.1),
        ("darcy.hdf5", None),
    ],
)
def test_darcy(tmp_path, name, beta):
    path = tmp_path / name
    nu, tensor = darcy_file(path)
    traj = check_format(read, path)
    assert traj.states.shape == (4, 1, 1, 16, 8) and traj.inputs.shape == (4, 1, 16, 8)
    assert traj.channels == ("u",) and traj.dt == 1.0
    assert traj.attrs["inputs"] == "nu" and traj.attrs["periodic"] is False
    assert traj.params == ({} if beta is None else {"beta": beta})
    known = "darcy2d" in catalog.rows("families")
    assert traj.family == ("darcy2d" if beta == 1.0 and known else None)
    np.testing.assert_array_equal(traj.states[1:3], tensor[1:3, :, None])
    np.testing.assert_array_equal(traj.inputs[1:3], nu[1:3, None])
    assert_closed(path)


def test_through_the_platform_loader(tmp_path, monkeypatch):
    import ups.data.source as source

    path = tmp_path / "2D_CFD_Rand_M1.0_Eta0.1_Zeta0.1_periodic_128_Train.hdf5"
    states = cfd_file(path, n=5, frames=5)
    traj = source.read_trajectories("pdebench", path, {})
    monkeypatch.setattr(
        source, "_CHUNK_BYTES", 2 * 5 * 4 * 16 * 8 * 4
    )  # two trajectories (5 frames) per read
    out = source._subsample(traj.states, 3, 3, 2, [2, 4])
    np.testing.assert_array_equal(out, states[:3, 0:5:2, :, ::2, ::4])


def five_axes(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=np.zeros((2, 3, 4, 4, 2), np.float32))


def short_y(path):
    write_pdebench(path, tensor=np.zeros((2, 3, 16, 8)), x=X, y=Y, t=np.arange(4.0), attrs={})
    with h5py.File(path, "a") as f:
        del f["y-coordinate"]
        f.create_dataset("y-coordinate", data=np.arange(7.0))


def cfd_without_t(path):
    cfd_file(path, n=2)
    with h5py.File(path, "a") as f:
        del f["t-coordinate"]


def empty_group(path):
    with h5py.File(path, "w") as f:
        f.create_group("0000")


def empty(path):
    h5py.File(path, "w").close()


def missing_input(path):
    tensor, a = np.zeros((2, 1, 16, 8)), np.zeros((2, 16, 8))
    write_pdebench(path, tensor=tensor, x=X, y=Y, t=np.zeros(1), attrs={"inputs": "a,f"}, datasets={"a": a})


MALFORMED = [
    (
        "2D_CFD_M0.1.hdf5",
        lambda p: cfd_file(p, drop=("Vy",)),
        "no `Vy` dataset for 2D compressible CFD; the file holds [Vx 3x4x16x8, density 3x4x16x8, "
        "pressure 3x4x16x8, t-coordinate 5, x-coordinate 16, y-coordinate 8], expected `density`, `Vx`, `Vy`, "
        "`pressure` (N, T, X, Y) each with",
    ),
    (
        "3D_CFD.hdf5",
        lambda p: cfd_file(p, extra={"Vz": np.zeros(3)}),
        "3D compressible CFD (`Vz`) is not supported; the file holds [Vx 3x4x16x8, Vy 3x4x16x8, Vz 3, "
        "density 3x4x16x8, pressure 3x4x16x8, t-coordinate 5, x-coordinate 16, y-coordinate 8], expected "
        "`density`",
    ),
    (
        "five.h5",
        five_axes,
        "`tensor` has 5 axes; the file holds [tensor 2x3x4x4x2], expected a PDEBench layout: `tensor` (N, T, X) "
        "or (N, T, X, Y)",
    ),
    (
        "short_y.h5",
        short_y,
        "the coordinates do not fit (T, X, Y) = (3, 16, 8): `x-coordinate` 16, `y-coordinate` 7, `t-coordinate` "
        "4; the file holds [t-coordinate 4, tensor 2x3x16x8, x-coordinate 16, y-coordinate 7], expected `tensor` "
        "(N, T, X, Y) with",
    ),
    (
        "cfd_no_t.hdf5",
        cfd_without_t,
        "the coordinates do not fit (T, X, Y) = (4, 16, 8): `x-coordinate` 16, `y-coordinate` 8, `t-coordinate` "
        "missing; the file holds [Vx 2x4x16x8",
    ),
    (
        "flat.h5",
        lambda p: group_file(p, shapes={0: np.zeros((5, 16, 8), np.float32)}),
        "group `0000` has no 4-D `data` (it holds [data 5x16x8, grid/]); the file holds [0000/, 0001/, 0002/, "
        "0003/], expected groups `0000`, `0001`, ... each with `data` (T, X, Y, C)",
    ),
    (
        "ends.h5",
        lambda p: group_file(p, shapes={3: np.zeros((5, 16, 8, 3), np.float32)}),
        "group `0003` holds `data` (5, 16, 8, 3), unlike the first group's (5, 16, 8, 2); the file holds [0000/",
    ),
    ("empty_group.h5", empty_group, "group `0000` has no 4-D `data` (it holds []); the file holds [0000/]"),
    (
        "empty.h5",
        empty,
        "the file holds no datasets or groups; the file holds [], expected a PDEBench layout",
    ),
    (
        "2D_DarcyFlow_beta1.0.hdf5",
        lambda p: darcy_file(p, nu_shape=(4, 8, 16)),
        "`nu` (4, 8, 16) does not fit `tensor` (4, 1, 16, 8); the file holds [nu 4x8x16, tensor 4x1x16x8, "
        "x-coordinate 16, y-coordinate 8], expected `nu` (N, X, Y) and `tensor` (N, 1, X, Y)",
    ),
    (
        "steady.h5",
        missing_input,
        "the attribute `inputs` names `f`, not an (N, X, Y) = (2, 16, 8) dataset; the file holds [a 2x16x8, "
        "t-coordinate 1, tensor 2x1x16x8, x-coordinate 16, y-coordinate 8], expected `tensor` (N, 1, X, Y) with "
        "`x-coordinate` (X,), `y-coordinate` (Y,), `t-coordinate` (T or T+1,) and the datasets named by the "
        "attribute `inputs`, (N, X, Y) each; got",
    ),
]
"""(file name, what writes it, the start of its error after `data.path: `) for malformed or unsupported files."""


@pytest.mark.parametrize(("name", "make", "says"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_files_say_what_they_hold_and_what_was_expected(tmp_path, name, make, says):
    path = tmp_path / name
    make(path)
    with pytest.raises(SpecError) as err:
        read(str(path), {})
    message = str(err.value)
    assert message.startswith(f"data.path: {says}"), message
    assert message.endswith(f"; got {str(path)!r}.") and "\n" not in message
