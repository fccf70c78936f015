"""PDEBench-layout files: the writer, the lazy subsampling reader, and its one-line errors."""

import hashlib

import h5py
import numpy as np
import pytest

import ups.data.pdebench as pdebench
from ups.data.pdebench import PDEBenchFile, file_checksum, write_pdebench
from ups.spec.errors import SpecError

CELLS = (np.arange(1024) + 0.5) / 1024


def write(path, *, tensor, x=CELLS, dt=0.01, attrs=None):
    t = np.arange(tensor.shape[1] + 1) * dt  # one more entry than frames, like PDEBench
    write_pdebench(path, tensor=tensor, x=x, t=t, attrs={} if attrs is None else attrs)
    return path


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A file at PDEBench's resolution: 1024 points, 201 frames every 0.01, attribute Nu."""
    tensor = np.random.default_rng(0).standard_normal((6, 201, 1024)).astype(np.float32)  # (N, T, X)
    path = tmp_path_factory.mktemp("pdebench") / "1D_Burgers_Sols_Nu0.01.hdf5"
    return write(path, tensor=tensor, attrs={"Nu": 0.02, "equation": "burgers1d"}), tensor


def test_read_subsamples_like_pdebench(full):
    path, tensor = full
    f = PDEBenchFile(path)
    assert (f.num_trajectories, f.num_frames, f.num_points) == (6, 201, 1024)
    assert f.t.shape == (201,) and f.dt_file == pytest.approx(0.01, rel=1e-6)
    assert f.attrs == {"Nu": 0.02, "equation": "burgers1d"}
    out = f.read(np.arange(6), num_points=256, dt=0.05, num_frames=41)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, tensor[:, ::5, ::4])
    np.testing.assert_array_equal(f.subsampled_x(256), CELLS.astype(np.float32)[::4])


def test_read_keeps_the_order_asked_for_in_bounded_chunks(full, monkeypatch):
    path, tensor = full
    monkeypatch.setattr(pdebench, "_CHUNK_BYTES", 2 * 21 * 1024 * 4)  # two trajectories per h5py read
    indices = np.array([4, 1, 1, 5, 0])
    out = PDEBenchFile(path).read(indices, num_points=512, dt=0.02, num_frames=11)
    np.testing.assert_array_equal(out, tensor[indices][:, :21:2, ::2])


def test_nu_from_attribute_then_name_then_fallback(full, tmp_path):
    assert PDEBenchFile(full[0], nu_fallback=9.0).nu == 0.02  # the attribute wins over the name
    small = np.zeros((1, 3, 1024), np.float32)
    assert PDEBenchFile(write(tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5", tensor=small)).nu == 0.001
    assert PDEBenchFile(write(tmp_path / "ReacDiff_Nu5e-1_Rho1.0.hdf5", tensor=small)).nu == 0.5
    anonymous = write(tmp_path / "burgers.h5", tensor=small)
    assert PDEBenchFile(anonymous, nu_fallback=0.3).nu == 0.3
    with pytest.raises(
        SpecError,
        match=r"^data\.nu: the viscosity is unknown: .*`Nu` attribute.*`Nu<value>`.*data\.nu is not set",
    ):
        PDEBenchFile(anonymous).nu  # noqa: B018


def test_legacy_domain_is_refused_unless_allowed(tmp_path):
    legacy_x = -1 + (np.arange(1024) + 0.5) * 2 / 1024  # the older release: (-1, 1)
    path = write(
        tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5", tensor=np.zeros((2, 3, 1024), np.float32), x=legacy_x
    )
    with pytest.raises(SpecError) as err:
        PDEBenchFile(path)
    message = str(err.value)
    assert message.startswith(
        "data.path: x-coordinate spans [-0.999, 0.999]: this is PDEBench's older release"
    )
    assert "flux twice too large" in message and "set data.allow_legacy=true to use it anyway" in message
    assert "\n" not in message
    np.testing.assert_allclose(PDEBenchFile(path, allow_legacy=True).x, legacy_x, rtol=1e-6)


def test_missing_and_foreign_files(tmp_path):
    missing = tmp_path / "nope.hdf5"
    with pytest.raises(SpecError, match=r"^data\.path: the file does not exist; got '.*nope\.hdf5'\.$"):
        PDEBenchFile(missing)
    text = tmp_path / "notes.hdf5"
    text.write_text("not a table")
    with pytest.raises(SpecError, match=r"^data\.path: not an HDF5 file; got '.*notes\.hdf5'\.$"):
        PDEBenchFile(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    with pytest.raises(
        SpecError, match=r"^data\.path: no `tensor` dataset \(PDEBench layout\); the file holds \[data\]"
    ):
        PDEBenchFile(other)
    two_d = tmp_path / "2d.h5"
    with h5py.File(two_d, "w") as f:
        f.create_dataset("tensor", data=np.zeros((2, 3, 4, 4), np.float32))
        f.create_dataset("x-coordinate", data=np.zeros(4))
        f.create_dataset("t-coordinate", data=np.zeros(3))
    with pytest.raises(
        SpecError, match=r"`tensor` must be \(trajectories, frames, points\) .*\(2, 3, 4, 4\)"
    ):
        PDEBenchFile(two_d)


def test_strides_that_do_not_fit(full):
    f = PDEBenchFile(full[0])
    with pytest.raises(
        SpecError,
        match=r"^data\.num_points: must divide the file's 1024 points; got 300\. Choices include 1024, 512, 256",
    ):
        f.read(np.arange(2), num_points=300, dt=0.05, num_frames=41)
    with pytest.raises(
        SpecError,
        match=r"^data\.dt: must be a whole multiple of the file's frame spacing 0\.01; got 0\.015\.$",
    ):
        f.read(np.arange(2), num_points=256, dt=0.015, num_frames=41)
    with pytest.raises(
        SpecError,
        match=r"^data\.num_frames: needs 206 of the file's frames \(every 5th\), but it has 201; got 42\. At data\.dt=0\.05 this file gives at most 41 frames\.$",
    ):
        f.read(np.arange(2), num_points=256, dt=0.05, num_frames=42)
    with pytest.raises(
        SpecError, match=r"^data\.num_trajectories: trajectory indices must lie in \[0, 6\); got 6\."
    ):
        f.read(np.array([0, 6]), num_points=256, dt=0.05, num_frames=41)


def test_write_is_atomic_and_checksum_is_sha256(tmp_path):
    path = write(tmp_path / "data.h5", tensor=np.ones((1, 2, 8), np.float32), x=(np.arange(8) + 0.5) / 8)
    assert [p.name for p in tmp_path.iterdir()] == ["data.h5"]  # no temporary file left behind
    with pytest.raises(TypeError):
        write(
            tmp_path / "data.h5",
            tensor=np.zeros((1, 2, 8), np.float32),
            x=(np.arange(8) + 0.5) / 8,
            attrs={"bad": object()},
        )
    assert [p.name for p in tmp_path.iterdir()] == ["data.h5"]  # a failed write keeps the old file, alone
    np.testing.assert_array_equal(PDEBenchFile(path).read([0], num_points=8, dt=0.01, num_frames=2), 1.0)
    assert file_checksum(path) == hashlib.sha256(path.read_bytes()).hexdigest()
