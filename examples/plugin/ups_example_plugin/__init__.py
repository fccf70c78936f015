"""An example ups plugin (docs/extending.md): the model `tiny_conv`, the data format `npz_trajectories` and the
metric `max_abs_error`, registered through entry points in pyproject.toml."""
