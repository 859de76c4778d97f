"""Why the hypersphere, and what SLERP does: exact 3-D slices of the 1024-d feature space.

Every picture here is a projection onto three orthonormal directions chosen so that what is being
taught is exact in it: the two faces of a pair span the plane both interpolations live in, and the
head's direction is one axis, so which side of the decision boundary a point falls on is its verdict.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class Head:
    """A 2-way linear head reduced to what decides: p_fake = σ(u·x + c)."""
    u: np.ndarray  # w_fake − w_real, [D]
    c: float  # b_fake − b_real
    normalize: bool  # the head sees x/‖x‖ (the Norm methods)
    source: str  # where it comes from, in words ("the ln_norm checkpoint's head", "class means")

    def p_fake(self, feats: np.ndarray) -> np.ndarray:
        x = np.asarray(feats, dtype=np.float64)
        if self.normalize:
            x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        return 1.0 / (1.0 + np.exp(-(x @ self.u + self.c)))

    def boundary_offset(self, norm: float = 1.0) -> float:
        """Where the boundary cuts the unit-direction axis u/‖u‖: x·û = offset (depends on ‖z‖ without Norm)."""
        scale = 1.0 if self.normalize else max(norm, 1e-12)
        return -self.c / (np.linalg.norm(self.u) * scale)


def head_from_tensors(tensors: dict, normalize: bool, source: str) -> Head:
    w = np.asarray(tensors["head.weight"], dtype=np.float64)
    b = np.asarray(tensors["head.bias"], dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != 2 or b.shape != (2,):
        raise DataError(f"{source}: expected a 2-way head, found weight {tuple(w.shape)}")
    return Head(w[1] - w[0], float(b[1] - b[0]), normalize, source)


def head_from_means(z: np.ndarray, labels: np.ndarray) -> Head:
    """Without a loaded head: the direction from the real mean to the fake mean, cut half way."""
    labels = np.asarray(labels)
    if not ((labels == 0).any() and (labels == 1).any()):
        raise DataError("a boundary needs both real and fake faces")
    mr, mf = z[labels == 0].mean(0), z[labels == 1].mean(0)
    u = mf - mr
    u = u / max(np.linalg.norm(u), 1e-12) * 10.0
    return Head(u, float(-u @ (mr + mf) / 2), True, "the direction between the class means (no head loaded)")


def _orth(v: np.ndarray, basis: list[np.ndarray]) -> np.ndarray | None:
    v = np.asarray(v, dtype=np.float64).copy()
    for e in basis:
        v -= (v @ e) * e
    n = np.linalg.norm(v)
    return v / n if n > 1e-9 else None


def basis(first: list[np.ndarray], dim: int, fill: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Three orthonormal rows: Gram-Schmidt of `first`, then `fill` rows (e.g. principal directions), then random."""
    out: list[np.ndarray] = []
    rng = np.random.default_rng(seed)
    extra = list(fill) if fill is not None else []
    for v in [*first, *extra, *rng.standard_normal((6, dim))]:
        e = _orth(v, out)
        if e is not None:
            out.append(e)
        if len(out) == 3:
            return np.stack(out)
    raise DataError("cannot build a 3-D view of 1-D features")


# -- SLERP against LERP ------------------------------------------------------------------------------------

@dataclass
class Paths:
    t: np.ndarray  # [S]
    slerp: np.ndarray  # [S, D] unit vectors on the great circle
    lerp: np.ndarray  # [S, D] the chord between the unit vectors (inside the ball)
    slerp_raw: np.ndarray  # [S, D] what a head without Norm sees: the direction scaled by the interpolated norm
    lerp_raw: np.ndarray  # [S, D] mixup of the raw features
    angle: float  # degrees between the two faces


def interpolate(za: np.ndarray, zb: np.ndarray, na: float = 1.0, nb: float = 1.0, steps: int = 41) -> Paths:
    """Both interpolations from face A to face B; za, zb are unit directions, na, nb their raw norms."""
    za = np.asarray(za, dtype=np.float64)
    zb = np.asarray(zb, dtype=np.float64)
    za, zb = za / np.linalg.norm(za), zb / np.linalg.norm(zb)
    t = np.linspace(0.0, 1.0, steps)
    cos = float(np.clip(za @ zb, -1.0, 1.0))
    theta = np.arccos(cos)
    if np.sin(theta) < 1e-6:
        raise DataError("the two faces point the same way (or exactly opposite): no unique great circle")
    a = np.sin((1 - t) * theta) / np.sin(theta)
    b = np.sin(t * theta) / np.sin(theta)
    sl = a[:, None] * za + b[:, None] * zb
    le = (1 - t)[:, None] * za + t[:, None] * zb
    r = ((1 - t) * na + t * nb)[:, None]
    raw = (1 - t)[:, None] * (na * za) + t[:, None] * (nb * zb)
    return Paths(t, sl, le, sl * r, raw, float(np.degrees(theta)))


def pair_view(za: np.ndarray, zb: np.ndarray, head: Head | None) -> np.ndarray:
    """The 3-D basis of a pair: A, B's component orthogonal to A (both paths lie in this plane, exactly),
    and the head's direction as the third axis."""
    first = [za, zb] + ([head.u] if head is not None else [])
    return basis(first, len(za))


def circle_on_sphere(normal: np.ndarray, offset: float, n: int = 121) -> np.ndarray | None:
    """Points of {x: ‖x‖ = 1, x·normal = offset} in 3-D (None when the plane misses the sphere)."""
    nrm = np.linalg.norm(normal)
    if nrm < 1e-12:
        return None
    k = normal / nrm
    d = offset / nrm
    if abs(d) >= 1:
        return None
    e1 = _orth(np.array([1.0, 0, 0]), [k]) if abs(k[0]) < 0.9 else _orth(np.array([0, 1.0, 0]), [k])
    e2 = np.cross(k, e1)
    phi = np.linspace(0, 2 * np.pi, n)
    r = np.sqrt(1 - d * d)
    return d * k + r * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)


# -- why the sphere --------------------------------------------------------------------------------------

def boundary_view(z: np.ndarray, head: Head, max_faces: int = 4000, seed: int = 0) -> np.ndarray:
    """Basis for the run's faces: the head's direction first (exact verdict side), then the two principal
    directions of what is left (the spread the head ignores)."""
    idx = np.arange(len(z))
    if len(z) > max_faces:
        idx = np.random.default_rng(seed).choice(idx, max_faces, replace=False)
    x = np.asarray(z[idx], dtype=np.float32)
    u = (head.u / np.linalg.norm(head.u)).astype(np.float32)
    resid = x - np.outer(x @ u, u)
    resid -= resid.mean(0)
    return basis([head.u], z.shape[1], fill=top_directions(resid, 2, seed), seed=seed)


def top_directions(x: np.ndarray, k: int, seed: int = 0, iters: int = 12) -> np.ndarray:
    """The k leading principal directions of centred rows x, by subspace iteration: O(n·d·k) per step
    instead of a full SVD's O(n·d²) (a 4,000 x 1,024 SVD is seconds on a busy 2-core machine)."""
    rng = np.random.default_rng(seed)
    v = np.linalg.qr(rng.standard_normal((x.shape[1], k)).astype(x.dtype))[0]
    for _ in range(iters):
        v = np.linalg.qr(x.T @ (x @ v))[0]
    return v.T.astype(np.float64)


def onto_sphere(coords: np.ndarray) -> np.ndarray:
    """Each 3-D projection moved onto the unit sphere keeping its first coordinate exactly (the verdict's
    axis): the other two are rescaled to fill the rest, keeping their direction (the azimuth)."""
    x = np.clip(coords[:, :1], -1.0, 1.0)
    rest = coords[:, 1:]
    n = np.linalg.norm(rest, axis=1, keepdims=True)
    unit = np.where(n > 1e-12, rest / np.maximum(n, 1e-12), np.array([[1.0, 0.0]]))
    return np.hstack([x, unit * np.sqrt(1.0 - x * x)])


def norm_sweep(z_unit: np.ndarray, norm: float, heads: dict[str, Head], scales: np.ndarray | None = None) -> dict:
    """p_fake of one face as its ‖z‖ is scaled, per head: flat for the Norm methods, moving without."""
    scales = np.linspace(0.25, 2.0, 36) if scales is None else scales
    feats = np.outer(scales * norm, z_unit)
    return {"scales": scales, **{name: h.p_fake(feats) for name, h in heads.items()}}
