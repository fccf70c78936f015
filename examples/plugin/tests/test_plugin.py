"""The plugin's own tests, with ups's conformance kit."""

import numpy as np
from ups_example_plugin import data, metrics, model

from ups import ModelIO
from ups.testing import check_format, check_metric, check_model


def test_the_model_conforms_in_1d_and_2d():
    check_model(model.build, ModelIO(spatial_dims=1, in_channels=1, out_channels=1, num_params=2, grid=(32,)))
    check_model(
        model.build, ModelIO(spatial_dims=2, in_channels=3, out_channels=3, num_params=0, grid=(16, 16))
    )


def test_the_format_conforms(tmp_path):
    path = tmp_path / "t.npz"
    rng = np.random.default_rng(0)
    data.write(str(path), rng.standard_normal((4, 6, 32)), np.linspace(0, 1, 32), 0.1, alpha=rng.random(4))
    traj = check_format(data.read, str(path))
    assert traj.family is None and set(traj.params) == {"alpha"}


def test_the_metric_conforms():
    check_metric(metrics.max_abs_error)
