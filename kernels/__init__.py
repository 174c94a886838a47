"""sda.kernels: nearest-code assignment for vector quantisation, fused.

    from sda.kernels import assign, backend
    a = assign(x, codebook)       # x [N, D], codebook [K, D]
    a.indices                     # [N] int64, nearest code, lowest index on ties
    a.counts                      # [K] int64, exact usage counts
    a.sums                        # [K, D] float32 per-code sums (None with with_sums=False)
    backend(x)                    # "triton" or "torch"

One pass over x gives all three, so EMA codebook updates, k-means and codebook-health
statistics cost no extra pass. The PyTorch reference (reference.py) is the specification and
the CPU path; the Triton kernel (assign_triton.py) is the CUDA path. This package imports
nothing from the rest of sda.
"""

from .common import Assignment
from .dispatch import assign, backend

__all__ = ["Assignment", "assign", "backend"]
