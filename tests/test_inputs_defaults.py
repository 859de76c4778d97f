"""Defaults that must be true: the SLERP view's nearest faces along the path are real faces only."""
from __future__ import annotations

import numpy as np

from dfdet.viz.services.sphere import nearest_rows


def test_nearest_rows_keeps_to_the_allowed_rows_across_chunks():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 8)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    real = np.arange(50) % 3 == 0
    queries = z[[1, 2, 4]]  # each query is a fake row itself: unrestricted, it finds itself
    assert nearest_rows(z, queries, chunk=7) == [1, 2, 4]
    got = nearest_rows(z, queries, chunk=7, allowed=real)
    want = [int(np.flatnonzero(real)[np.argmax(z[real] @ q)]) for q in queries]
    assert got == want and all(real[got])
    assert nearest_rows(z, queries, allowed=np.zeros(50, dtype=bool)) == [-1, -1, -1]
