"""Trained models and training checkpoints as v2 .sda files (sda.sdafile): no pickle anywhere.

    save_model(path, model, metadata)             # kind "model": weights, codebooks, EMA state
    model, metadata = load_model(path)            # rebuilt from the stored config alone, in eval mode
    save_checkpoint(path, model, optimizer, metadata)   # kind "checkpoint": + optimizer, RNG
    state = load_checkpoint(path)                 # TrainingState: what the engine needs to resume
    metadata = model_metadata(name, config, preflight, history, health)   # what every file carries

Every write is atomic (sdafile.write): a crash mid-save leaves the previous file as it was.
"""

import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

import sda
from sda import sdafile
from sda.config import VQVAEConfig
from sda.model import ConvVQVAE

OPTIMIZER_PREFIX = "optimizer."
RNG_TENSOR = "rng.torch"


def model_metadata(name: str, config: VQVAEConfig, preflight, history: dict, health: list,
                   run_id: str | None = None) -> dict:
    """The metadata SDA_FORMAT.md asks of a model: provenance, config, data, health, loss history. run_id: the
    training run's identity, the same in its model and checkpoint (sda.runfiles)."""
    return {
        "model_name": name,
        "run_id": run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"sda": sda.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "config": config.to_dict(),
        "dataset": preflight.to_dict(),
        "health": [h.to_dict() for h in health],
        "history": history,  # {"epochs": [per-epoch losses and health], "warnings": [...]}
    }


def save_model(path: Path, model: ConvVQVAE, metadata: dict) -> None:
    sdafile.write(path, model.state_dict(), metadata, kind="model")


def load_model(path: Path) -> tuple[ConvVQVAE, dict]:
    """The model in eval mode, built from the config stored in the file, and its metadata."""
    tensors, metadata = _read(path, "model")
    model = ConvVQVAE(_config(path, metadata))
    _load_weights(path, model, tensors)
    return model.eval(), metadata


def save_checkpoint(path: Path, model: ConvVQVAE, optimizer: torch.optim.Optimizer, metadata: dict) -> None:
    """Model tensors, optimizer state and the torch RNG state; metadata must say where training stands."""
    tensors = dict(model.state_dict())
    optimizer_state = optimizer.state_dict()
    for param, values in optimizer_state["state"].items():
        for key, value in values.items():
            tensors[f"{OPTIMIZER_PREFIX}{param}.{key}"] = value
    tensors[RNG_TENSOR] = torch.get_rng_state()
    metadata = {**metadata, "optimizer_param_groups": optimizer_state["param_groups"]}
    sdafile.write(path, tensors, metadata, kind="checkpoint")


@dataclass(frozen=True)
class TrainingState:
    config: VQVAEConfig
    model: dict  # state dict
    optimizer: dict  # state dict
    rng: torch.Tensor
    metadata: dict


def load_checkpoint(path: Path) -> TrainingState:
    tensors, metadata = _read(path, "checkpoint")
    config = _config(path, metadata)
    model = {k: v for k, v in tensors.items() if _is_model_tensor(k)}
    _load_weights(path, ConvVQVAE(config), model)  # refuse a checkpoint whose weights do not fit its config
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        if name.startswith(OPTIMIZER_PREFIX):
            param, key = name[len(OPTIMIZER_PREFIX):].split(".", 1)
            state.setdefault(int(param), {})[key] = tensor
    if RNG_TENSOR not in tensors or "position" not in metadata:
        raise sdafile.SdaFormatError(f"{path} is a checkpoint without its training position or RNG state: "
                                     "it cannot be resumed. Start a new run.")
    return TrainingState(
        config=config,
        model=model,
        optimizer={"state": state, "param_groups": metadata["optimizer_param_groups"]},
        rng=tensors[RNG_TENSOR],
        metadata=metadata,
    )


def _is_model_tensor(name: str) -> bool:
    return not name.startswith(OPTIMIZER_PREFIX) and name != RNG_TENSOR


def _read(path: Path, kind: str) -> tuple[dict, dict]:
    return sdafile.read(Path(path), kind=kind)  # a file of the other kind is refused before any tensor is read


def _config(path: Path, metadata: dict) -> VQVAEConfig:
    try:
        return VQVAEConfig.from_dict(metadata["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise sdafile.SdaFormatError(f"{path} has no usable training config ({exc}): the file is damaged or "
                                     "was not written by sda") from None


def _load_weights(path: Path, model: ConvVQVAE, tensors: dict) -> None:
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise sdafile.SdaFormatError(f"{path} does not hold the weights its config describes: "
                                     f"{str(exc).splitlines()[0]}") from None
