"""The PyTorch reference for nearest-code assignment: the specification and the CPU path.

For every row x_n of x [N, D] and codebook c [K, D]:
    index_n = argmin_k  ||c_k||^2 - 2 x_n . c_k     (||x_n||^2 is the same for every k, so dropped)
    ties go to the lowest k; a row containing NaN gets index 0
    counts[k] = #{n : index_n = k}
    sums[k]   = sum of x_n over {n : index_n = k}, in float32
Everything is computed in float32 whatever the input dtype.

Rows are processed in chunks so that the [rows, K] distance block stays cache-sized on CPU
(and bounded on GPU): the N x K matrix is never materialised.
"""

import torch

from .common import Assignment, squared_norms, validate

# Bytes of distance block per chunk: a few MiB measured best on a 2-core machine
# with 1 MiB of L2 per core (bench/RESULTS.md); accelerators only need the bound.
CPU_CHUNK_BYTES = 4 << 20
ACCELERATOR_CHUNK_BYTES = 256 << 20

# For wide codebooks the argmin runs in two stages over blocks of this many codes: torch's
# fused min-with-index reduction is far slower on CPU than a plain amin, so we find the
# winning block with amin and only track indices inside it.
ARGMIN_BLOCK = 64


def assign_reference(x: torch.Tensor, codebook: torch.Tensor, with_sums: bool = True,
                     check_finite: bool = True) -> Assignment:
    """Nearest code per row of x [N, D] in codebook [K, D]; see the module docstring.
    check_finite: see common.squared_norms."""
    validate(x, codebook)
    x = x.detach()
    n, d = x.shape
    k = codebook.shape[0]
    c_sq = squared_norms(codebook, check_finite)         # [K]
    c_t = codebook.detach().float().t().contiguous()     # [D, K]: a plain NN matmul per chunk

    budget = CPU_CHUNK_BYTES if x.device.type == "cpu" else ACCELERATOR_CHUNK_BYTES
    rows = max(1, min(n, budget // (4 * k)))
    indices = torch.empty(n, dtype=torch.int64, device=x.device)
    sums = torch.zeros(k, d, dtype=torch.float32, device=x.device) if with_sums else None
    dist = torch.empty(rows, k, dtype=torch.float32, device=x.device)
    for start in range(0, n, rows):
        chunk = x[start:start + rows].float()            # [r, D]; casts only one chunk at a time
        r = chunk.shape[0]
        torch.addmm(c_sq, chunk, c_t, alpha=-2.0, out=dist[:r])
        idx = _argmin_rows(dist[:r])
        indices[start:start + r] = idx
        if sums is not None:
            sums.index_add_(0, idx, chunk)
    counts = torch.bincount(indices, minlength=k)
    return Assignment(indices, counts, sums)


def _argmin_rows(dist: torch.Tensor) -> torch.Tensor:
    """Index of the minimum of each row of dist [R, K], lowest index on ties, as [R] int64."""
    r, k = dist.shape
    if dist.device.type != "cpu" or k < 8 * ARGMIN_BLOCK or k % ARGMIN_BLOCK:
        return torch.min(dist, dim=1).indices
    blocks = dist.view(r, k // ARGMIN_BLOCK, ARGMIN_BLOCK)
    # The first block holding the row minimum, then the first position inside it: together the
    # lowest index among equal minima, exactly as the one-stage argmin.
    best_block = torch.amin(blocks, dim=2).argmin(dim=1)                       # [R]
    inside = blocks[torch.arange(r, device=dist.device), best_block].argmin(dim=1)
    return best_block * ARGMIN_BLOCK + inside
