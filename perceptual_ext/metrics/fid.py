r"""FID and KID: streaming feature statistics, the exact Fréchet distance, the kernel Inception distance.

The Fréchet distance between Gaussians :math:`N(\mu_1, \Sigma_1)` and :math:`N(\mu_2, \Sigma_2)`,

.. math::
    d^2 = \lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{Tr}\Sigma_1 + \operatorname{Tr}\Sigma_2
          - 2 \operatorname{Tr}(\Sigma_1 \Sigma_2)^{1/2},

is computed in float64 without a matrix square root: with :math:`\Sigma_1 = L L^\top`,
:math:`\Sigma_1\Sigma_2` is similar to the symmetric PSD matrix :math:`L^\top \Sigma_2 L`, so
:math:`\operatorname{Tr}(\Sigma_1\Sigma_2)^{1/2} = \sum_i \sqrt{\lambda_i(L^\top \Sigma_2 L)}`
(``eigvalsh``; no complex numbers). Singular covariances (fewer samples than dimensions) take an
exact rank-revealing factor from ``eigh`` instead of pytorch-fid's diagonal offset.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .. import _checks
from ..data.images import write_atomic

ArrayLike = Union[Tensor, np.ndarray]
_BLOCK = 256  # column block of the triangular congruence L^T S L


def _as_float64(x, name: str, ndim: int, device=None) -> Tensor:
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"{name} must hold real numbers, got numpy dtype {x.dtype}")
        t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    elif isinstance(x, Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        t = x.detach().to(torch.float64)
    else:
        raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}")
    if t.dim() != ndim:
        layout = "[d]" if ndim == 1 else ("[d, d]" if name.startswith("sigma") else "[N, d]")
        raise ValueError(f"{name} must be {layout}, got shape {tuple(t.shape)}")
    if device is not None:
        t = t.to(device)
    return t


def _congruence(lower: Tensor, sym: Tensor) -> Tensor:
    """Upper triangle of ``lower^T @ sym @ lower`` for lower-triangular ``lower`` and symmetric ``sym``.

    Blocked so that the zeros of ``lower`` are skipped: ``T = sym @ lower`` costs d^3 flops instead
    of 2d^3 and only the upper block triangle of ``lower^T T`` is formed (about 2d^3/3), against
    4d^3 for two full products.
    """
    d = lower.shape[0]
    if d <= 2 * _BLOCK:
        return lower.mT @ sym @ lower
    t = torch.empty_like(sym)
    for j in range(0, d, _BLOCK):
        t[:, j:j + _BLOCK] = sym[:, j:] @ lower[j:, j:j + _BLOCK]
    out = torch.zeros_like(sym)
    for i in range(0, d, _BLOCK):
        out[i:i + _BLOCK, i:] = lower[i:, i:i + _BLOCK].mT @ t[i:, i:]
    return out


def trace_sqrt_product(sigma1: ArrayLike, sigma2: ArrayLike) -> float:
    r""":math:`\operatorname{Tr}(\Sigma_1\Sigma_2)^{1/2}` of two symmetric PSD matrices, in float64.

    Cholesky of one matrix (``Σ1``, or ``Σ2`` if ``Σ1`` is singular), then ``eigvalsh`` of
    ``Lᵀ Σ L`` (upper triangle). If both are singular, ``Σ1``'s factor comes from ``eigh`` with its
    numerically zero eigenvalues (below ``d · eps · λ_max``) dropped, which is exact for
    rank-deficient covariances. Eigenvalues of ``Lᵀ Σ L`` below the same threshold (rounding noise
    of exact zeros) count as zero.
    """
    s1 = _as_float64(sigma1, "sigma1", 2)
    s2 = _as_float64(sigma2, "sigma2", 2, device=s1.device)
    return float(_trace_sqrt(_symmetric(s1, "sigma1"), _symmetric(s2, "sigma2")))


def _symmetric(s: Tensor, name: str) -> Tensor:
    if s.shape[0] != s.shape[1]:
        raise ValueError(f"{name} must be a square [d, d] covariance matrix, got shape {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    if bool((torch.diagonal(s) < 0).any()):
        raise ValueError(f"{name} is not a covariance matrix: its diagonal has negative entries")
    return (s + s.mT) * 0.5


def _trace_sqrt(s1: Tensor, s2: Tensor) -> Tensor:
    if s1.shape[0] == 0:
        return s1.new_zeros(())
    for a, b in ((s1, s2), (s2, s1)):
        lower, info = torch.linalg.cholesky_ex(a)
        if int(info) == 0:
            return _sum_sqrt(torch.linalg.eigvalsh(_congruence(lower, b), UPLO="U"))
    w, v = torch.linalg.eigh(s1)
    keep = w > w.max().clamp_min(0) * s1.shape[0] * torch.finfo(s1.dtype).eps
    if not bool(keep.any()):
        return s1.new_zeros(())
    factor = v[:, keep] * w[keep].sqrt()
    return _sum_sqrt(torch.linalg.eigvalsh(factor.mT @ s2 @ factor))


def _sum_sqrt(eig: Tensor) -> Tensor:
    """Σ √λ over the eigenvalues above the numerical-rank threshold ``d · eps · λ_max``: the zero
    eigenvalues of a singular product come out of ``eigvalsh`` as ±rounding noise, whose square
    roots (√eps ≈ 1.5e-8 of the scale each) would otherwise add up."""
    tol = eig.shape[0] * torch.finfo(eig.dtype).eps * eig.max().clamp_min(0)
    return torch.where(eig > tol, eig, torch.zeros_like(eig)).sqrt().sum()


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    r"""Fréchet distance between two Gaussians (the FID of two feature statistics), in float64.

    .. math::
        d^2 = \lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{Tr}\Sigma_1 + \operatorname{Tr}\Sigma_2
              - 2 \sum_i \sqrt{\lambda_i(L^\top \Sigma_2 L)}, \qquad \Sigma_1 = L L^\top

    No ``sqrtm`` and no complex numbers (see :func:`trace_sqrt_product`); exact for singular
    covariances, where pytorch-fid adds ``1e-6`` to both diagonals. Runs on the device of
    ``sigma1`` when it is a tensor. Rounding-level negative results are returned as 0.

    Args:
        mu1, mu2 (Tensor[d] or ndarray): means.
        sigma1, sigma2 (Tensor[d, d] or ndarray): covariances (symmetric PSD; symmetrized inside).

    Returns:
        float: the squared Fréchet distance (what FID reports).

    Example:
        >>> import numpy as np
        >>> round(frechet_distance(np.zeros(2), np.diag([4.0, 1.0]), np.ones(2), np.diag([1.0, 1.0])), 6)
        3.0
    """
    s1 = _as_float64(sigma1, "sigma1", 2)
    m1 = _as_float64(mu1, "mu1", 1, device=s1.device)
    m2 = _as_float64(mu2, "mu2", 1, device=s1.device)
    s2 = _as_float64(sigma2, "sigma2", 2, device=s1.device)
    d = m1.shape[0]
    if m2.shape[0] != d or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"mu1, sigma1, mu2, sigma2 must be [d], [d, d], [d], [d, d] with one d, got shapes "
                         f"{tuple(m1.shape)}, {tuple(s1.shape)}, {tuple(m2.shape)}, {tuple(s2.shape)}")
    for t, name in ((m1, "mu1"), (m2, "mu2")):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    s1, s2 = _symmetric(s1, "sigma1"), _symmetric(s2, "sigma2")
    diff = m1 - m2
    value = diff.dot(diff) + torch.trace(s1) + torch.trace(s2) - 2.0 * _trace_sqrt(s1, s2)
    return max(float(value), 0.0)


class FeatureStatistics:
    r"""Streaming mean and covariance of feature vectors, in float64 (the input of FID).

    Each :meth:`update` centres its batch on the batch mean and adds the batch's scatter matrix
    and the mean shift to the running sums (Chan et al.'s pairwise update), so no sum of squares
    of uncentred features is ever formed: stable for 50k x 2048 Inception features.

    .. math::
        M_2 \leftarrow M_2 + X_c^\top X_c + \delta\delta^\top \frac{n\,n_b}{n + n_b},
        \qquad \Sigma = \frac{M_2}{n - 1}

    Args:
        dim: feature dimension; ``None`` takes it from the first update.

    Attributes:
        n (int or None): samples seen (``None`` for statistics loaded from a file without a count).

    Example:
        >>> stats = FeatureStatistics()
        >>> stats.update(torch.randn(100, 8)).update(torch.randn(50, 8))  # doctest: +ELLIPSIS
        FeatureStatistics(n=150, dim=8)
        >>> stats.covariance.shape
        torch.Size([8, 8])
    """

    def __init__(self, dim: Optional[int] = None) -> None:
        if dim is not None:
            _checks.positive_int(dim, "dim")
        self.dim = dim
        self.n: Optional[int] = 0
        self._mean: Optional[Tensor] = None
        self._m2: Optional[Tensor] = None

    def __repr__(self) -> str:
        return f"FeatureStatistics(n={self.n}, dim={self.dim})"

    def update(self, features: ArrayLike) -> "FeatureStatistics":
        """Add a batch ``[N, dim]`` (tensor or numpy array; any float dtype; N may be 0). Returns self."""
        x = _as_float64(features, "features", 2, device=None if self._mean is None else self._mean.device)
        if self.n is None:
            raise ValueError("features: these statistics were loaded without a sample count (a pytorch-fid .npz) "
                             "and cannot be updated")
        if self.dim is None:
            self.dim = x.shape[1]
        if x.shape[1] != self.dim:
            raise ValueError(f"features must be [N, {self.dim}], got shape {tuple(x.shape)}")
        nb = x.shape[0]
        if nb == 0:
            return self
        if not bool(torch.isfinite(x).all()):
            raise ValueError("features must be finite (the batch holds NaN or inf)")
        batch_mean = x.mean(0)
        xc = x - batch_mean
        if self._mean is None:
            self._mean = batch_mean
            self._m2 = xc.mT @ xc
        else:
            total = self.n + nb
            delta = batch_mean - self._mean
            self._m2.addmm_(xc.mT, xc).addr_(delta, delta, alpha=self.n * nb / total)
            self._mean += delta * (nb / total)
        self.n += nb
        return self

    def merge(self, other: "FeatureStatistics") -> "FeatureStatistics":
        """Add another set's statistics (e.g. from another process) to these. Returns self."""
        if not isinstance(other, FeatureStatistics):
            raise TypeError(f"other must be a FeatureStatistics, got {type(other).__name__}")
        if self.n is None or other.n is None:
            raise ValueError("other: statistics loaded without a sample count cannot be merged")
        if other.n == 0:
            return self
        if self.dim is not None and other.dim != self.dim:
            raise ValueError(f"other has dim {other.dim}, expected {self.dim}")
        if self.n == 0:
            self.dim, self.n = other.dim, other.n
            self._mean, self._m2 = other._mean.clone(), other._m2.clone()
            return self
        mean, m2 = other._mean.to(self._mean.device), other._m2.to(self._mean.device)
        total = self.n + other.n
        delta = mean - self._mean
        self._m2.add_(m2).addr_(delta, delta, alpha=self.n * other.n / total)
        self._mean += delta * (other.n / total)
        self.n = total
        return self

    def _require(self, what: str) -> None:
        if self._mean is None:
            raise ValueError(f"{what}: no features yet (call update first)")

    @property
    def mean(self) -> Tensor:
        """Tensor[dim], float64."""
        self._require("mean")
        return self._mean

    @property
    def covariance(self) -> Tensor:
        """Tensor[dim, dim], float64, unbiased (``ddof=1``, as ``numpy.cov``); needs two samples."""
        self._require("covariance")
        if self.n is not None and self.n < 2:
            raise ValueError(f"covariance needs at least 2 samples, got {self.n}")
        return self._m2 if self.n is None else self._m2 / (self.n - 1)

    def frechet_distance(self, other: "FeatureStatistics") -> float:
        """:func:`frechet_distance` between these statistics and ``other``'s."""
        return frechet_distance(self.mean, self.covariance, other.mean, other.covariance)

    def save(self, path: Union[str, os.PathLike], overwrite: bool = True) -> str:
        """Write ``mu`` and ``sigma`` (float64) to a ``.npz`` in pytorch-fid's format, atomically.

        The sample count is stored as an extra entry ``n`` (pytorch-fid ignores it), so loaded
        statistics can be updated further.
        """
        path = os.fspath(path)
        if not path.endswith(".npz"):
            raise ValueError(f"path must end with .npz (pytorch-fid's statistics format), got {path!r}")
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
        mu, sigma = self.mean.cpu().numpy(), self.covariance.cpu().numpy()
        extra = {} if self.n is None else {"n": np.int64(self.n)}

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, mu=mu, sigma=sigma, **extra)

        return write_atomic(path, write)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "FeatureStatistics":
        """Read a pytorch-fid ``.npz`` (``mu [d]``, ``sigma [d, d]``; optional ``n``)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ValueError(f"statistics file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as f:
                entries = {k: f[k] for k in f.files if k in ("mu", "sigma", "n")}
        except Exception as exc:  # zipfile / pickle errors come in many types
            raise ValueError(f"cannot read statistics file {path}: {exc}") from exc
        if "mu" not in entries or "sigma" not in entries:
            raise ValueError(f"{path} is not a pytorch-fid statistics file: it needs entries 'mu' and 'sigma'")
        mu, sigma = entries["mu"], entries["sigma"]
        n = int(entries["n"]) if "n" in entries else None
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"{path}: mu must be [d] and sigma [d, d], got {mu.shape} and {sigma.shape}")
        stats = cls(dim=int(mu.shape[0]))
        stats._mean = torch.from_numpy(np.asarray(mu, dtype=np.float64))
        sigma = torch.from_numpy(np.asarray(sigma, dtype=np.float64))
        if n is not None and n >= 2:
            stats.n, stats._m2 = n, sigma * (n - 1)
        else:
            stats.n, stats._m2 = None, sigma
        return stats


def _poly_kernel(a: Tensor, b: Tensor, gamma: float, coef0: float, degree: int) -> Tensor:
    return (a @ b.mT * gamma + coef0) ** degree


def kid(real_features: ArrayLike, fake_features: ArrayLike, num_subsets: int = 100, subset_size: int = 1000,
        degree: int = 3, gamma: Optional[float] = None, coef0: float = 1.0, seed: int = 0) -> Tuple[float, float]:
    r"""Kernel Inception distance (Bińkowski et al.): unbiased MMD² over random subsets, float64.

    For each of ``num_subsets`` subsets of ``m = subset_size`` rows drawn without replacement
    from each set (a seeded generator), with :math:`k(x, y) = (\gamma\, x \cdot y + c_0)^{p}`:

    .. math::
        \mathrm{MMD}^2 = \frac{\sum_{i \ne j} k(x_i, x_j) + \sum_{i \ne j} k(y_i, y_j)}{m(m-1)}
                         - \frac{2}{m^2} \sum_{i, j} k(x_i, y_j)

    Args:
        real_features, fake_features (Tensor[N, d] or ndarray): features of the two sets.
        num_subsets: number of subsets (≥ 1).
        subset_size: rows per subset (≥ 2, at most the size of either set).
        degree, gamma, coef0: the polynomial kernel; ``gamma=None`` is ``1 / d``.
        seed: seed of the subset draws.

    Returns:
        ``(mean, std)`` over the subsets (std with ``ddof=0``, as torch-fidelity reports it).

    Example:
        >>> x, y = torch.randn(200, 16), torch.randn(200, 16) + 0.5
        >>> mean, std = kid(x, y, num_subsets=10, subset_size=100)
    """
    x = _as_float64(real_features, "real_features", 2)
    y = _as_float64(fake_features, "fake_features", 2, device=x.device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real_features and fake_features must have the same dimension, got {x.shape[1]} and "
                         f"{y.shape[1]}")
    _checks.positive_int(num_subsets, "num_subsets")
    _checks.positive_int(subset_size, "subset_size", minimum=2)
    _checks.positive_int(degree, "degree")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    for t, name in ((x, "real_features"), (y, "fake_features")):
        if subset_size > t.shape[0]:
            raise ValueError(f"subset_size ({subset_size}) is larger than {name} ({t.shape[0]} samples); pass a "
                             f"smaller subset_size")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    d = x.shape[1]
    gamma = 1.0 / d if gamma is None else _checks.positive_float(gamma, "gamma")
    if isinstance(coef0, bool) or not isinstance(coef0, (int, float)) or not math.isfinite(coef0):
        raise TypeError(f"coef0 must be a finite number, got {coef0!r}")
    generator = torch.Generator().manual_seed(seed)
    m = subset_size
    values = []
    for _ in range(num_subsets):
        a = x[torch.randperm(x.shape[0], generator=generator)[:m].to(x.device)]
        b = y[torch.randperm(y.shape[0], generator=generator)[:m].to(x.device)]
        kxx, kyy = _poly_kernel(a, a, gamma, coef0, degree), _poly_kernel(b, b, gamma, coef0, degree)
        kxy = _poly_kernel(a, b, gamma, coef0, degree)
        within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        values.append(within - 2.0 * kxy.sum() / (m * m))
    values = torch.stack(values)
    return float(values.mean()), float(values.std(correction=0))


# --- images -> Inception features -----------------------------------------------------------------
