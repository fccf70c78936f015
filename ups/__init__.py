"""Universal Physics Stack: declarative experiments for neural PDE surrogates.

For plugin authors (docs/extending.md): `ups.PLUGIN_API`, `ups.ModelIO`, `ups.Trajectories`, `ups.MetricContext`,
and the conformance kit `ups.testing`. Nothing heavy is imported here.
"""

from ups.plugin import PLUGIN_API, MetricContext, ModelIO, Trajectories

__version__ = "0.1.0"

__all__ = ["PLUGIN_API", "MetricContext", "ModelIO", "Trajectories", "__version__"]
