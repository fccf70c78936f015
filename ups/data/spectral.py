"""Fourier pseudo-spectral ETDRK4 shared by the Burgers and diffusion-reaction generators.

Both solve v̂_t = L v̂ + F·N(v̂) for the forward-normalised rfft v̂ of a periodic field on M points, with L diagonal
(diffusion) and F a per-mode factor (the flux derivative or the reaction rate, with the 2/3 dealiasing mask).
Legend: B a batch of trajectories, K = M//2 + 1 Fourier modes, P contour points. L may also be per trajectory
(B, K), as for Kuramoto–Sivashinsky on domains of different lengths; F then broadcasts against it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

_CONTOUR_POINTS = 32


def etdrk4_coefficients(linear: torch.Tensor, h: float) -> tuple[torch.Tensor, ...]:
    """Kassam & Trefethen (2005): φ-functions as means over a circle around each h·L, avoiding cancellation.

    `linear` is (K,) or (B, K); the coefficients have its shape."""
    roots = torch.exp(
        1j * math.pi * (torch.arange(1, _CONTOUR_POINTS + 1, dtype=torch.float64) - 0.5) / _CONTOUR_POINTS
    )
    lr = h * linear[..., None] + roots  # (..., K, P) complex128
    exp_lr = torch.exp(lr)

    def mean(z: torch.Tensor) -> torch.Tensor:
        return h * z.mean(dim=-1).real  # (..., K)

    q = mean((torch.exp(lr / 2) - 1) / lr)
    f1 = mean((-4 - lr + exp_lr * (4 - 3 * lr + lr**2)) / lr**3)
    f2 = mean((2 + lr + exp_lr * (lr - 2)) / lr**3)
    f3 = mean((-4 - 3 * lr - lr**2 + exp_lr * (4 - lr)) / lr**3)
    return torch.exp(h * linear), torch.exp(h * linear / 2), q, f1, f2, f3


def step_coefficients(linear: torch.Tensor, h: float, factor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The ETDRK4 coefficients for step h with the nonlinear term's factor F multiplied through (f2 doubled),
    all complex128 for `addcmul`: fewer, larger ops, which is what counts at these sizes."""
    e, e2, q, f1, f2, f3 = etdrk4_coefficients(linear, h)
    return tuple(
        c.to(torch.complex128) for c in (e, e2, q * factor, f1 * factor, 2 * f2 * factor, f3 * factor)
    )


def etdrk4_step(
    v: torch.Tensor, coefficients: tuple[torch.Tensor, ...], nonlinear: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """One Cox & Matthews ETDRK4 step of v (B, K); `coefficients` from `step_coefficients`, `nonlinear` = N."""
    e, e2, q, f1, f2, f3 = coefficients
    e2v = e2 * v
    nv = nonlinear(v)
    a = torch.addcmul(e2v, q, nv)
    na = nonlinear(a)
    b = torch.addcmul(e2v, q, na)
    nb = nonlinear(b)
    c = torch.addcmul(e2 * a, q, nb.mul(2).sub_(nv))
    nc = nonlinear(c)
    out = torch.addcmul(e * v, f1, nv)
    out.addcmul_(f2, na.add_(nb))  # f2 includes the factor 2
    return out.addcmul_(f3, nc)


def upsample(u: torch.Tensor, num_points: int) -> torch.Tensor:
    """Fourier coefficients (forward-normalised) of the trigonometric interpolant of u, for a grid of num_points."""
    coefficients = torch.fft.rfft(u, norm="forward")  # (B, X//2 + 1)
    size = u.shape[-1]
    if num_points > size and size % 2 == 0:
        coefficients[:, -1] *= 0.5  # the Nyquist mode stands for e^{+iπXx} and e^{-iπXx} alike: split it
    padded = coefficients.new_zeros(u.shape[0], num_points // 2 + 1)  # (B, K)
    padded[:, : coefficients.shape[-1]] = coefficients
    return padded


@contextmanager
def solver_threads() -> Iterator[None]:
    """One intra-op thread (the cost is per op, and the cores are shared), subnormals flushed (decaying modes
    would slow the FFTs); torch has no getter for the (default off) flush flag."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(previous)
