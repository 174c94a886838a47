"""Which backend runs an assignment: the Triton kernel on CUDA, the PyTorch reference elsewhere.

SDA_KERNELS=auto (default) | torch | triton overrides the choice; it is read at every call so a
running process can be steered by tests. Forcing triton on a CPU tensor only works under the
Triton interpreter (TRITON_INTERPRET=1 set before triton is imported).
"""

import os

import torch

from .common import Assignment, validate
from .reference import assign_reference

try:
    from . import assign_triton as _triton
except ImportError:  # no triton on this platform: the reference serves everything
    _triton = None

CHOICES = ("auto", "torch", "triton")


def _requested() -> str:
    choice = os.environ.get("SDA_KERNELS", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"SDA_KERNELS={choice!r} is not one of {', '.join(CHOICES)}")
    return choice


def backend(x: torch.Tensor) -> str:
    """'triton' or 'torch': the backend assign would use for x [N, D]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"backend: x must be a torch.Tensor [N, D], got {type(x).__name__}")
    choice = _requested()
    if choice == "torch":
        return "torch"
    if choice == "triton":
        if _triton is None:
            raise ValueError("SDA_KERNELS=triton but triton is not importable; install triton or unset SDA_KERNELS")
        if not _triton.supports(x):
            raise ValueError(
                f"SDA_KERNELS=triton but the kernel cannot run on a {x.device.type} tensor of shape "
                f"{tuple(x.shape)}: it needs CUDA and D <= {_triton.MAX_D}, or TRITON_INTERPRET=1 "
                "set before triton is imported"
            )
        return "triton"
    return "triton" if _triton is not None and x.is_cuda and _triton.supports(x) else "torch"


def assign(x: torch.Tensor, codebook: torch.Tensor, with_sums: bool = True, check_finite: bool = True) -> Assignment:
    """Nearest code per row of x [N, D] in codebook [K, D], with usage counts and per-code sums.

    Returns Assignment(indices [N] int64, counts [K] int64, sums [K, D] float32 or None).
    Ties go to the lowest index; float32, float16 and bfloat16 inputs are computed in float32.
    Not differentiable: x and codebook are read as data. See kernels/reference.py for the exact
    definition. A codebook with a non-finite code raises ValueError, at the cost of one host sync;
    check_finite=False skips that check for a caller that makes it elsewhere (see squared_norms).
    """
    validate(x, codebook)
    if backend(x) == "triton":
        return _triton.assign_triton(x, codebook, with_sums, check_finite=check_finite)
    return assign_reference(x, codebook, with_sums, check_finite)
