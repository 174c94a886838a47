"""Where training runs and at what precision: the --device and --precision flags, resolved.

    device = pick_device("auto")               # cuda, then mps, then cpu
    precision = pick_precision("auto", device)  # "bf16" (autocast) on CUDA, "fp32" elsewhere
"""

import torch

from sda.config import ConfigError


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"--device {requested!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {requested}: CUDA is not available here; use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {requested}: MPS is not available here; use --device cpu or auto")
    return device


def pick_precision(requested: str, device: torch.device) -> str:
    if requested == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if requested not in ("fp32", "bf16"):
        raise ConfigError(f"--precision {requested!r}: use auto, fp32 or bf16")
    return requested
