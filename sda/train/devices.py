"""Where training runs and at what precision: the --device and --precision flags, resolved.

    device = pick_device("auto")               # cuda, then mps, then cpu
    precision = pick_precision("auto", device)  # "bf16" (autocast) on CUDA, "fp32" elsewhere
    kernels = kernel_backend(device)            # "triton" on CUDA, "torch" elsewhere, or as SDA_KERNELS says
"""

import torch

from sda.errors import ConfigError
from sda.kernels import backend


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


def kernel_backend(device: torch.device, dim: int = 1) -> str:
    """The backend sda.kernels will use for vectors of size dim on device. sda.kernels imports nothing of sda, so
    its refusal of SDA_KERNELS (an unknown value, or triton where it cannot run) is a ValueError: here it becomes
    the settings error it is, before any audio is read."""
    try:
        return backend(torch.empty(0, dim, device=device))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
