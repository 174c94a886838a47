"""sda.format.modelfile: models and checkpoints round trip, and each way a file can fail raises the SdaError
subclass its docstrings promise (SdaFormatError: a file sda did not write, or one damaged past its checksums).
tests/attacks/test_model_files.py crafts files from a trained run through every entry point; these build a tiny
model directly and cover what those leave out."""

import dataclasses
import math
import re

import pytest
import torch

from sda.format import container, modelfile
from sda.format.container import SdaFormatError
from sda.model.vqvae import ConvVQVAE
from tests.helpers import SMALL

CONFIG = dataclasses.replace(SMALL, codebook_size=16, warmup_steps=0)  # concrete, as training resolves it


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(model path, checkpoint path) of a tiny model after one optimizer step."""
    torch.manual_seed(0)
    model = ConvVQVAE(CONFIG)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, CONFIG.audio.n_mels, CONFIG.audio.chunk_frames)).loss.backward()
    optimizer.step()
    out = tmp_path_factory.mktemp("files")
    metadata = {"config": CONFIG.to_dict(), "dataset": {"files": [{"path": "kick.wav"}]},
                "history": {"epochs": [], "warnings": []}}
    position = {"epoch": 1, "epoch_step": 1, "step": 1, "processes": 1, "elapsed_s": 0.5,
                "sums": {"loss": 1.0, "reconstruction": 0.9, "commitment": 0.1, "steps": 1}}
    modelfile.save_model(out / "m.sda", model, metadata)
    modelfile.save_checkpoint(out / "m.checkpoint.sda", model, optimizer, {**metadata, "position": position})
    return out / "m.sda", out / "m.checkpoint.sda", model


def rewrite(source, target, tensors=None, **metadata):
    """target: source with tensors(original tensors) and metadata keys replaced (None deletes one)."""
    original, meta = container.read(source)
    meta = {k: v for k, v in {**meta, **metadata}.items() if v is not None}
    kind = container.read_header(source)["kind"]
    container.write(target, tensors(original) if tensors else original, meta, kind=kind)
    return target


def test_a_model_round_trips_in_eval_mode(files):
    path, _, saved = files
    model, metadata = modelfile.load_model(path)
    assert not model.training and model.config == CONFIG and metadata["dataset"]["files"] == [{"path": "kick.wav"}]
    for name, tensor in saved.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_a_checkpoint_round_trips_with_the_optimizer_state_and_position(files):
    _, path, saved = files
    state = modelfile.load_checkpoint(path)
    assert state.config == CONFIG and state.metadata["position"]["step"] == 1
    assert set(state.optimizer["state"]) == set(range(len(list(saved.parameters()))))
    assert all(set(values) == set(modelfile.ADAM_STATE) for values in state.optimizer["state"].values())
    assert torch.equal(state.rng, container.read(path)[0][modelfile.RNG_TENSOR])


def test_each_kind_is_refused_where_the_other_is_expected(files):
    model, checkpoint, _ = files
    with pytest.raises(SdaFormatError, match="is an sda checkpoint, not a model"):
        modelfile.load_model(checkpoint)
    with pytest.raises(SdaFormatError, match="is an sda model, not a checkpoint"):
        modelfile.load_checkpoint(model)


@pytest.mark.parametrize("setting", ["codebook_size", "epochs"])
def test_a_config_left_automatic_is_refused_in_a_model_and_a_checkpoint(files, tmp_path, setting):
    for source in files[:2]:
        path = rewrite(source, tmp_path / source.name, config={**CONFIG.to_dict(), setting: None})
        load = modelfile.load_model if source.name == "m.sda" else modelfile.load_checkpoint
        with pytest.raises(SdaFormatError, match="leaves the codebook size or the number of epochs automatic"):
            load(path)


def test_a_config_out_of_range_is_refused(files, tmp_path):
    path = rewrite(files[0], tmp_path / "m.sda", config={**CONFIG.to_dict(), "downsample": 3})
    with pytest.raises(SdaFormatError, match="no usable training config.*downsample=3"):
        modelfile.load_model(path)


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinite_weights_are_refused(files, tmp_path, value):
    path = rewrite(files[0], tmp_path / "m.sda", lambda t: {**t, "decoder.10.bias": torch.full_like(
        t["decoder.10.bias"], value)})
    with pytest.raises(SdaFormatError, match="'decoder.10.bias' holds NaN or infinite values"):
        modelfile.load_model(path)


def test_a_codebook_of_the_wrong_shape_is_refused_naming_what_the_config_needs(files, tmp_path):
    name = "quantizer.levels.0.embed"
    path = rewrite(files[0], tmp_path / "m.sda", lambda t: {**t, name: torch.zeros(8, CONFIG.codebook_dim)})
    with pytest.raises(SdaFormatError, match=rf"'{name}' is float32 \[8, 8\], its config needs float32 \[16, 8\]"):
        modelfile.load_model(path)


def test_a_checkpoint_without_its_rng_state_cannot_be_resumed(files, tmp_path):
    path = rewrite(files[1], tmp_path / "c.sda", lambda t: {k: v for k, v in t.items() if k != modelfile.RNG_TENSOR})
    with pytest.raises(SdaFormatError, match="without its training position or RNG state"):
        modelfile.load_checkpoint(path)


def test_a_checkpoint_without_its_position_cannot_be_resumed(files, tmp_path):
    path = rewrite(files[1], tmp_path / "c.sda", position=None)
    with pytest.raises(SdaFormatError, match="without its training position or RNG state"):
        modelfile.load_checkpoint(path)


def test_an_incomplete_optimizer_state_is_refused(files, tmp_path):
    path = rewrite(files[1], tmp_path / "c.sda",
                   lambda t: {k: v for k, v in t.items() if k != "optimizer.0.exp_avg_sq"})
    with pytest.raises(SdaFormatError, match="its optimizer state is incomplete"):
        modelfile.load_checkpoint(path)


def test_an_optimizer_moment_of_the_wrong_dtype_is_refused(files, tmp_path):
    moment = "optimizer.0.exp_avg"
    path = rewrite(files[1], tmp_path / "c.sda", lambda t: {**t, moment: t[moment].double()})
    with pytest.raises(SdaFormatError, match="'optimizer.0.exp_avg' is float64 .*, not float32"):
        modelfile.load_checkpoint(path)


@pytest.mark.parametrize("change, words", [
    ({"elapsed_s": -1.0}, "position.elapsed_s is -1.0, not a time in seconds"),
    ({"elapsed_s": "0.5"}, "position.elapsed_s is '0.5', not a time in seconds"),
    ({"sums": {"loss": 1.0}}, "position.sums is not the loss sums sda writes"),
    ({"sums": {"loss": 1.0, "reconstruction": 0.9, "commitment": 0.1, "steps": 1.5}}, "position.sums is not"),
    ({"processes": 0}, "position.processes is 0, not a whole number from 1"),
])
def test_a_training_position_sda_did_not_write_is_refused(files, tmp_path, change, words):
    position = {**container.read_metadata(files[1])["position"], **change}
    path = rewrite(files[1], tmp_path / "c.sda", position=position)
    with pytest.raises(SdaFormatError, match=re.escape(words)):
        modelfile.load_checkpoint(path)


def test_a_history_that_is_not_an_object_of_lists_is_refused(files, tmp_path):
    path = rewrite(files[1], tmp_path / "c.sda", history={"epochs": {}, "warnings": []})
    with pytest.raises(SdaFormatError, match="its history is not an object with lists of epochs and warnings"):
        modelfile.load_checkpoint(path)


USAGE = torch.arange(CONFIG.rvq_levels * 16, dtype=torch.int64).reshape(CONFIG.rvq_levels, 16)


def test_the_usage_counts_round_trip_and_a_file_without_them_reads_none(files, tmp_path):
    path, _, model = files
    assert modelfile.load_usage(path) is None  # as files from before the usage counts were kept
    with_usage = tmp_path / "u.sda"
    modelfile.save_model(with_usage, model, container.read(path)[1], USAGE)
    assert torch.equal(modelfile.load_usage(with_usage), USAGE)
    assert container.read(with_usage)[0][modelfile.USAGE_TENSOR].nbytes == CONFIG.rvq_levels * 16 * 8
    loaded, _ = modelfile.load_model(with_usage)  # the counts are not weights: the model loads as before
    assert all(torch.equal(loaded.state_dict()[name], t) for name, t in model.state_dict().items())


@pytest.mark.parametrize("usage", [USAGE.float(), USAGE[:, :8], -USAGE, USAGE[:1]])
def test_usage_counts_of_the_wrong_form_are_refused_as_damage(files, tmp_path, usage):
    path = rewrite(files[0], tmp_path / "bad.sda", tensors=lambda t: {**t, modelfile.USAGE_TENSOR: usage.contiguous()})
    for load in (modelfile.load_usage, modelfile.load_model):
        with pytest.raises(SdaFormatError, match="its usage counts are"):
            load(path)
