"""Trained models and training checkpoints as v2 .sda files (sda.format.container): no pickle anywhere.

    save_model(path, model, metadata, usage)      # kind "model": weights, codebooks, EMA state, usage counts
    model, metadata = load_model(path)            # rebuilt from the stored config alone, in eval mode
    usage = load_usage(path)                      # [L, K] int64: the last health window's counts, or None
    save_checkpoint(path, model, optimizer, metadata)   # kind "checkpoint": + optimizer, RNG
    state = load_checkpoint(path)                 # TrainingState: what the engine needs to resume
    metadata = model_metadata(name, config, preflight, history, health)   # what every file carries
    digest = weights_hash(model.state_dict())     # SHA-256 hex of the weights: the model's identity in codes files

Every write is atomic (container.write): a crash mid-save leaves the previous file as it was.
"""

import dataclasses
import functools
import hashlib
import math
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

import torch

import sda
from sda.config import VQVAEConfig
from sda.errors import SdaError, SdaFormatError
from sda.format import container
from sda.model.bitrate import bitrate
from sda.model.health import HealthWarning
from sda.model.vqvae import ConvVQVAE
from sda.text import printable

OPTIMIZER_PREFIX = "optimizer."
RNG_TENSOR = "rng.torch"
# The per-code usage counts [levels, K] int64 of the last training health window: which codes carry the data.
# L x K x 8 bytes (3 KiB at 3 x 128, 32 KiB at 4 x 1024). Files from before it have none.
USAGE_TENSOR = "health.usage"


def model_metadata(name: str, config: VQVAEConfig, preflight, history: dict, health: list,
                   run_id: str | None = None) -> dict:
    """The metadata SDA_FORMAT.md asks of a model: provenance, config, data, health, loss history. run_id: the
    training run's identity, the same in its model and checkpoint (sda.train.runfiles)."""
    return {
        "model_name": name,
        "run_id": run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"sda": sda.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "config": config.to_dict(),
        "dataset": preflight.to_dict(),
        "health": [h.to_dict() for h in health],
        "bitrate": bitrate(config, health).to_dict() if health else None,  # of the final health window
        "history": history,  # {"epochs": [per-epoch losses and health], "warnings": [...]}
    }


def weights_hash(tensors) -> str:
    """The SHA-256 (hex) of a model's tensors: {name: tensor}, as model.state_dict() gives them (a model file's
    tensors less USAGE_TENSOR, which counts codes and is no weight). Canonical, so that a model file, the model it
    loads into and a codes file made with it agree: tensors in name order, each as its UTF-8 name, its dtype's
    container name (F32...), its shape as int64s and its bytes, every part preceded by its length in 8 bytes."""
    digest = hashlib.sha256()

    def part(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    for name in sorted(n for n in tensors if n != USAGE_TENSOR):
        tensor = tensors[name].detach().to("cpu").contiguous()
        part(name.encode("utf-8"))
        part(_DTYPE_NAMES[tensor.dtype].encode("ascii"))
        part(b"".join(d.to_bytes(8, "little") for d in tensor.shape))
        part(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


_DTYPE_NAMES = {dtype: name for name, dtype in container.DTYPES.items()}


def save_model(path: Path, model: ConvVQVAE, metadata: dict, usage: torch.Tensor | None = None) -> None:
    """usage: the last health window's counts [levels, K], kept as USAGE_TENSOR."""
    tensors = dict(model.state_dict())
    if usage is not None:
        tensors[USAGE_TENSOR] = usage.detach().to("cpu", torch.int64).contiguous()
    container.write(path, tensors, metadata, kind="model")


def load_model(path: Path) -> tuple[ConvVQVAE, dict]:
    """The model in eval mode, built from the config stored in the file, and its metadata. Every tensor is checked
    against the shapes the config implies before the model is allocated, so a crafted config cannot make this
    allocate more than the file holds; any problem is an SdaError."""
    tensors, metadata = _read(path, "model")
    config = _config(path, metadata)
    _check_usage(path, config, tensors.pop(USAGE_TENSOR, None))
    _check_tensors(path, _layout(config)[0], tensors)
    model = ConvVQVAE(config)
    _load_weights(path, model, tensors)
    return model.eval(), metadata


def load_codec_model(path: Path, then: str = "use it", name: str | None = None) -> tuple[ConvVQVAE, dict]:
    """load_model, for encoding and decoding: a model saved during warm-up, before its codebooks were initialised,
    has no codes yet and is refused with no_codes_message (name: how to call the file, default its path)."""
    model, metadata = load_model(path)
    if not model.quantizer.initialized:
        raise SdaError(no_codes_message(name or str(path), metadata, model.config.warmup_steps, then))
    return model, metadata


def no_codes_message(name: str, metadata: dict, warmup_steps: int | None, then: str) -> str:
    """Why a model saved during its warm-up cannot encode or decode, and what to do (then: what comes after)."""
    weights = metadata.get("weights")
    step = weights.get("step", "?") if isinstance(weights, dict) else "?"
    return (f"{printable(name)} was saved during warm-up (step {step} of {warmup_steps}), before its codebooks were "
            "initialised, so it has no codes yet: resume its training (sda train DATA_DIR --resume "
            f"NAME.checkpoint.sda) past the warm-up, then {then}")


def load_usage(path: Path) -> torch.Tensor | None:
    """The per-code usage counts [levels, K] int64 of a model file's last health window; None in files from before
    sda kept them. The whole file is read and verified (a model is a few MB)."""
    tensors, metadata = _read(path, "model")
    usage = tensors.get(USAGE_TENSOR)
    _check_usage(path, _config(path, metadata), usage)
    return usage


def _check_usage(path: Path, config: VQVAEConfig, usage: torch.Tensor | None) -> None:
    want = [config.rvq_levels, config.codebook_size]
    if usage is not None and (usage.dtype != torch.int64 or list(usage.shape) != want or bool((usage < 0).any())):
        _damaged(path, f"its usage counts are {_form(usage)}, not int64 {want} of counts of at least 0")


def save_checkpoint(path: Path, model: ConvVQVAE, optimizer: torch.optim.Optimizer, metadata: dict) -> None:
    """Model tensors, optimizer state and the torch RNG state; metadata must say where training stands."""
    tensors = dict(model.state_dict())
    optimizer_state = optimizer.state_dict()
    for param, values in optimizer_state["state"].items():
        for key, value in values.items():
            tensors[f"{OPTIMIZER_PREFIX}{param}.{key}"] = value
    tensors[RNG_TENSOR] = torch.get_rng_state()
    metadata = {**metadata, "optimizer_param_groups": optimizer_state["param_groups"]}
    container.write(path, tensors, metadata, kind="checkpoint")


@dataclass(frozen=True)
class TrainingState:
    config: VQVAEConfig
    model: dict  # state dict
    optimizer: dict  # state dict
    rng: torch.Tensor
    metadata: dict


def load_checkpoint(path: Path) -> TrainingState:
    """What the engine needs to resume, every part checked against the stored config (SdaFormatError naming the
    part): weights, AdamW's per-parameter state, the RNG state and the training position."""
    tensors, metadata = _read(path, "checkpoint")
    config = _config(path, metadata)
    expected, params = _layout(config)
    model = {k: v for k, v in tensors.items() if _is_model_tensor(k)}
    _check_tensors(path, expected, model)
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        if name.startswith(OPTIMIZER_PREFIX):
            param, _, key = name[len(OPTIMIZER_PREFIX):].partition(".")
            if not param.isdigit() or int(param) >= len(params) or key not in ADAM_STATE:
                _damaged(path, f"it holds an optimizer tensor {name!r} that AdamW does not have")
            want = () if key == "step" else params[int(param)]
            if tuple(tensor.shape) != tuple(want) or tensor.dtype != torch.float32:
                _damaged(path, f"optimizer tensor {name!r} is {_form(tensor)}, not float32 {list(want)}")
            state.setdefault(int(param), {})[key] = tensor
    if any(set(values) != set(ADAM_STATE) for values in state.values()):
        _damaged(path, "its optimizer state is incomplete")
    rng = tensors.get(RNG_TENSOR)
    if rng is None or "position" not in metadata:
        raise SdaFormatError(f"{path} is a checkpoint without its training position or RNG state: "
                                     "it cannot be resumed. Start a new run.")
    if rng.dtype != torch.uint8 or tuple(rng.shape) != tuple(torch.get_rng_state().shape):
        _damaged(path, f"its RNG state is {_form(rng)}, not torch's uint8 {list(torch.get_rng_state().shape)}")
    _check_resume_metadata(path, metadata, config, len(params))
    return TrainingState(
        config=config,
        model=model,
        optimizer={"state": state, "param_groups": metadata["optimizer_param_groups"]},
        rng=rng,
        metadata=metadata,
    )


ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


def _check_resume_metadata(path: Path, metadata: dict, config: VQVAEConfig, n_params: int) -> None:
    """The metadata the engine resumes from, by type and range: position, optimizer groups, dataset, history."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            _damaged(path, what)

    assert config.epochs is not None  # _config refuses a config that was never resolved
    position = metadata["position"]
    need(isinstance(position, dict), "its training position is not an object")
    whole = {"epoch": (1, config.epochs + 1), "epoch_step": (0, 10**9), "step": (0, 10**12),
             "processes": (1, 1 << 16)}
    for key, (low, high) in whole.items():
        value = position.get(key, 1 if key == "processes" else None)
        need(type(value) is int and low <= value <= high,
             f"position.{key} is {value!r}, not a whole number from {low} to {high}")
    elapsed = position.get("elapsed_s")
    need(_number(elapsed) and elapsed >= 0, f"position.elapsed_s is {elapsed!r}, not a time in seconds")
    sums = position.get("sums")
    need(isinstance(sums, dict) and set(sums) == {"loss", "reconstruction", "commitment", "steps"}
         and all(_number(v) for v in sums.values()) and type(sums["steps"]) is int and sums["steps"] >= 0,
         "position.sums is not the loss sums sda writes")
    groups = metadata.get("optimizer_param_groups")
    need(isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict)
         and groups[0].get("params") == list(range(n_params)),
         f"optimizer_param_groups is not one group over the model's {n_params} parameters")
    dataset = metadata.get("dataset")
    need(isinstance(dataset, dict) and isinstance(dataset.get("files"), list)
         and all(isinstance(f, dict) and isinstance(f.get("path"), str) for f in dataset["files"]),
         "its dataset record has no list of files")
    history = metadata.get("history")
    if not (isinstance(history, dict) and isinstance(history.get("epochs"), list)
            and isinstance(history.get("warnings"), list) and isinstance(history.get("health_warnings", []), list)):
        _damaged(path, "its history is not an object with lists of epochs and warnings")
    try:
        for record in history.get("health_warnings", []):
            HealthWarning.from_dict(record)
    except (KeyError, TypeError, ValueError, AttributeError):
        _damaged(path, "its history holds a health warning sda cannot read")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_model_tensor(name: str) -> bool:
    return not name.startswith(OPTIMIZER_PREFIX) and name != RNG_TENSOR


def _read(path: Path, kind: str) -> tuple[dict, dict]:
    return container.read(Path(path), kind=kind)  # a file of the other kind is refused before any tensor is read


def _config(path: Path, metadata: dict) -> VQVAEConfig:
    """The stored config, concrete as training resolved it (a codebook size and a number of epochs)."""
    try:
        config = VQVAEConfig.from_dict(metadata["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SdaFormatError(f"{path} has no usable training config ({exc}): the file is damaged or "
                                     "was not written by sda") from None
    if config.codebook_size is None or config.epochs is None:
        _damaged(path, "its config leaves the codebook size or the number of epochs automatic, as only a run's "
                       "start does")
    return config


# The tensors a config implies come from a stand-in model too small to cost anything: building the real one
# is what a crafted config turns into a huge allocation, and torch's meta device takes over a second to start
# in a fresh process. Each size the architecture's shapes are made of gets a prime that no other dimension of
# it equals (kernels are 1, 3 and 4 wide), so every dimension of the stand-in's tensors maps back to its
# setting; tests/attacks/test_model_files.py checks the result against real models of many configs.
_STAND_INS = {"n_mels": 11, "hidden_channels": 13, "codebook_dim": 17, "codebook_size": 19}


@functools.lru_cache(maxsize=8)
def _layout(config: VQVAEConfig) -> tuple[dict[str, tuple[tuple, torch.dtype]], tuple[tuple, ...]]:
    """({tensor name: (shape, dtype)} of ConvVQVAE(config)'s state dict, its parameters' shapes in order)."""
    stand_in = dataclasses.replace(config, audio=dataclasses.replace(config.audio, n_mels=_STAND_INS["n_mels"]),
                                   **{k: v for k, v in _STAND_INS.items() if k != "n_mels"})
    real = {size: getattr(config.audio if k == "n_mels" else config, k) for k, size in _STAND_INS.items()}

    def shape(tensor: torch.Tensor) -> tuple:
        return tuple(real.get(d, d) for d in tensor.shape)

    with torch.random.fork_rng(devices=[]):  # building initialises weights: the caller's RNG stays as it was
        model = ConvVQVAE(stand_in)
    return ({name: (shape(t), t.dtype) for name, t in model.state_dict().items()},
            tuple(shape(p) for p in model.parameters()))


def _check_tensors(path: Path, expected: dict, tensors: dict) -> None:
    """Every tensor the config implies (expected: {name: (shape, dtype)}), and no other; all floats finite."""
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        _damaged(path, f"it does not hold the weights its config describes (missing: {', '.join(missing[:3]) or 'none'}"
                       f"; unexpected: {', '.join(extra[:3]) or 'none'})")
    for name, (shape, dtype) in expected.items():
        got = tensors[name]
        if tuple(got.shape) != shape or got.dtype != dtype:
            _damaged(path, f"tensor {name!r} is {_form(got)}, its config needs "
                           f"{str(dtype).removeprefix('torch.')} {list(shape)}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            _damaged(path, f"tensor {name!r} holds NaN or infinite values")


def _form(tensor: torch.Tensor) -> str:
    return f"{str(tensor.dtype).removeprefix('torch.')} {list(tensor.shape)}"


def _damaged(path: Path, what: str) -> NoReturn:
    raise SdaFormatError(f"{path} is damaged or was not written by sda: {what}")


def _load_weights(path: Path, model: ConvVQVAE, tensors: dict) -> None:
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise SdaFormatError(f"{path} does not hold the weights its config describes: "
                                     f"{str(exc).splitlines()[0]}") from None
