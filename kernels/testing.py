"""Judging an assignment against a float64 oracle: used by the tests and by bench/gpu_kernels.py.

Two float32 computations of ||c||^2 - 2 x.c may order two nearly equal distances differently,
so an index is accepted when it is the true nearest code or within float32 rounding of it: a
genuine near-tie, with the bound computed from the magnitudes involved, not a fudge factor.
"""

import torch

EPS32 = torch.finfo(torch.float32).eps


def oracle_distances(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """||c_k||^2 - 2 x_n . c_k in float64, [N, K]."""
    x64, c64 = x.double(), codebook.double()
    return (c64 * c64).sum(1)[None, :] - 2.0 * x64 @ c64.T


def rounding_bound(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Per row, a worst-case bound on float32 error in one distance, [N] float64.

    A D-term float32 dot product errs by at most D * eps * sum|x_j c_j| <= D * eps * |x| |c|;
    the same for |c|^2. Two backends can each err by that much, in opposite directions.
    """
    d = x.shape[1]
    x_norm = x.double().norm(dim=1)
    c_norm = codebook.double().norm(dim=1).max()
    return 2.0 * d * EPS32 * (2.0 * x_norm * c_norm + c_norm * c_norm)


def check_assignment(x, codebook, got, with_sums=True, max_near_tie_fraction=0.01):
    """Assert that got (an Assignment) is a correct assignment of x to codebook.

    Indices: each is the oracle's nearest code or a near-tie of it. Counts: exactly the
    histogram of the indices. Sums: the float64 per-code sums of x under those indices, to
    float32 accuracy. Returns the number of near-tie rows where got differs from the oracle.
    """
    x, codebook = x.detach().cpu(), codebook.detach().cpu()   # the oracle runs on CPU in float64
    n, d = x.shape
    k = codebook.shape[0]
    assert got.indices.shape == (n,) and got.indices.dtype == torch.int64
    assert got.counts.shape == (k,) and got.counts.dtype == torch.int64
    idx = got.indices.cpu()
    if n:
        assert int(idx.min()) >= 0 and int(idx.max()) < k

    dist = oracle_distances(x, codebook)
    best = dist.argmin(dim=1)
    off = torch.nonzero(idx != best).flatten()
    if len(off):
        gap = dist[off, idx[off]] - dist[off, best[off]]
        bound = rounding_bound(x[off], codebook)
        worst = int((gap / bound).argmax())
        assert bool((gap <= bound).all()), (
            f"row {int(off[worst])}: chose code {int(idx[off[worst]])}, distance {float(gap[worst]):.3g} "
            f"beyond the nearest code {int(best[off[worst]])}; float32 rounding explains at most "
            f"{float(bound[worst]):.3g}"
        )
        assert len(off) <= max(1, max_near_tie_fraction * n), f"{len(off)} of {n} rows off the oracle"

    assert torch.equal(got.counts.cpu(), torch.bincount(idx, minlength=k))

    if not with_sums:
        assert got.sums is None
        return len(off)
    assert got.sums.shape == (k, d) and got.sums.dtype == torch.float32
    want = torch.zeros(k, d, dtype=torch.float64).index_add_(0, idx, x.double())
    # A float32 sum of m terms, added in any order, errs by at most m * eps * sum|terms|.
    scale = torch.zeros(k, d, dtype=torch.float64).index_add_(0, idx, x.double().abs())
    tol = EPS32 * got.counts.double()[:, None] * scale
    err = (got.sums.cpu().double() - want).abs()
    assert bool((err <= tol).all()), f"sums off by up to {float(err.max()):.3g}"
    return len(off)
