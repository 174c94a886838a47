"""What both backends share: the result type, input validation, and the codebook norms.

Keeping these in one place is what makes the two backends comparable: they see the same
validated inputs and subtract from the very same float32 squared norms.
"""

from typing import NamedTuple

import torch

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class Assignment(NamedTuple):
    """The result of one assignment pass.

    indices: [N] int64, the nearest code per row (lowest index on exact ties)
    counts:  [K] int64, how many rows chose each code
    sums:    [K, D] float32, per-code sum of the rows that chose it; None when not asked for
    """

    indices: torch.Tensor
    counts: torch.Tensor
    sums: torch.Tensor | None


def validate(x: torch.Tensor, codebook: torch.Tensor) -> None:
    """Raise ValueError, saying what was expected, unless x [N, D] and codebook [K, D] fit."""
    for name, t, shape in (("x", x, "[N, D]"), ("codebook", codebook, "[K, D]")):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"assign: {name} must be a torch.Tensor {shape}, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"assign: {name} must be a 2-D tensor {shape}, got shape {tuple(t.shape)}")
        if t.dtype not in SUPPORTED_DTYPES:
            raise ValueError(
                f"assign: {name} has dtype {t.dtype}; expected float32, float16 or bfloat16"
            )
    if codebook.shape[0] < 1 or codebook.shape[1] < 1:
        raise ValueError(
            f"assign: codebook must have at least one code of dimension >= 1, got shape {tuple(codebook.shape)}"
        )
    if x.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"assign: x has D={x.shape[1]} but codebook has D={codebook.shape[1]}; "
            "the last dimensions must match"
        )
    if x.device != codebook.device:
        raise ValueError(
            f"assign: x is on {x.device} but codebook is on {codebook.device}; move both to the same device"
        )


def squared_norms(codebook: torch.Tensor, check_finite: bool = True) -> torch.Tensor:
    """||c||^2 per code in float32, [K]. Raises ValueError if any code is not finite.

    A non-finite norm (NaN or inf in the code, or a code so large its norm overflows)
    would make every distance to it meaningless, so it is an error rather than a silent
    wrong answer. This check costs one host sync on GPU, on a [K] tensor: a caller that
    checks its codebooks itself, off the per-call path (the training step checks every
    level once, with its losses), passes check_finite=False.
    """
    c = codebook.detach().float()
    norms = (c * c).sum(dim=1)
    if check_finite and not bool(torch.isfinite(norms).all()):
        bad = torch.nonzero(~torch.isfinite(norms)).flatten()[:8].tolist()
        raise ValueError(
            f"assign: codebook has non-finite values (NaN, inf, or a squared norm beyond float32) "
            f"in codes {bad}; re-initialise those codes before assigning"
        )
    return norms
