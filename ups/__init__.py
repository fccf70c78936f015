"""Universal Physics Stack: declarative experiments for neural PDE surrogates."""

__version__ = "0.1.0"
