"""sda.config: validation with named errors, the codebook-size tiers, derivation, and round trips."""

import dataclasses
import json

import pytest

from sda.config import AudioConfig, VQVAEConfig, auto_codebook_size
from sda.errors import ConfigError


@pytest.mark.parametrize("seconds, size", [(0.5, 64), (29.99, 64), (30.0, 128), (149.9, 128), (150.0, 256),
                                           (7200.0, 256)])
def test_codebook_size_tiers_by_seconds_of_audio(seconds, size):
    assert auto_codebook_size(seconds) == size


@pytest.mark.parametrize("change, message", [
    ({"rvq_levels": 5}, "rvq_levels=5 is out of range: expected a whole number from 2 to 4"),
    ({"rvq_levels": 1}, "rvq_levels=1"),
    ({"codebook_size": 1}, "codebook_size=1"),
    ({"commitment_weight": 0.0}, "commitment_weight=0.0"),
    ({"ema_decay": 1.0}, "ema_decay=1.0"),
    ({"epochs": 0}, "epochs=0"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"learning_rate": -1e-3}, "learning_rate=-0.001"),
    ({"downsample": 3}, "downsample=3"),
    ({"downsample": 8, "audio": AudioConfig(chunk_frames=36)}, "chunk_frames=36 .*multiple of downsample=8"),
    ({"audio": AudioConfig(n_fft=1000)}, "n_fft=1000 .*power of two"),
    ({"audio": AudioConfig(n_mels=600)}, "n_mels=600"),
    ({"seed": -1}, "seed=-1"),
])
def test_out_of_range_settings_are_named(change, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(VQVAEConfig(), **change).validate()


def test_defaults_are_valid_and_as_documented():
    cfg = VQVAEConfig().validate()
    assert (cfg.rvq_levels, cfg.codebook_size, cfg.codebook_dim, cfg.commitment_weight) == (3, None, 64, 0.25)
    assert cfg.epochs is None
    assert cfg.audio.chunk_samples == cfg.audio.chunk_frames * cfg.audio.hop_length


def test_resolve_derives_dataset_dependent_settings_in_one_place():
    cfg = VQVAEConfig(batch_size=16)
    assert cfg.resolve(seconds=12.0, n_train_chunks=100).codebook_size == 64
    assert cfg.resolve(seconds=600.0, n_train_chunks=100).codebook_size == 256
    assert cfg.resolve(seconds=12.0, n_train_chunks=5).batch_size == 5  # a tiny folder: one batch per epoch
    override = dataclasses.replace(cfg, codebook_size=512).resolve(seconds=12.0, n_train_chunks=100)
    assert override.codebook_size == 512


@pytest.mark.parametrize("chunks, epochs", [(5, 400), (16, 400), (160, 40), (1600, 30), (100000, 30)])
def test_auto_epochs_give_enough_steps_on_small_folders(chunks, epochs):
    cfg = VQVAEConfig(batch_size=16).resolve(seconds=5.0, n_train_chunks=chunks)
    assert cfg.epochs == epochs
    assert VQVAEConfig(epochs=7).resolve(seconds=5.0, n_train_chunks=chunks).epochs == 7


def test_json_round_trip():
    cfg = VQVAEConfig(rvq_levels=4, audio=AudioConfig(n_mels=64)).resolve(seconds=60.0, n_train_chunks=60)
    assert VQVAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_from_dict_rejects_unknown_settings():
    data = VQVAEConfig().to_dict()
    data["warp_factor"] = 9
    with pytest.raises(ConfigError, match="unknown VQVAEConfig setting.*warp_factor"):
        VQVAEConfig.from_dict(data)
    data = VQVAEConfig().to_dict()
    data["audio"]["bits"] = 24
    with pytest.raises(ConfigError, match="unknown AudioConfig setting.*bits"):
        VQVAEConfig.from_dict(data)


def test_a_config_written_before_the_warm_up_existed_loads_without_one():
    data = VQVAEConfig().to_dict()
    del data["warmup_steps"]  # files from before sda.train.warmup: resuming them must not add a warm-up
    assert VQVAEConfig.from_dict(data).warmup_steps == 0
    assert VQVAEConfig.from_dict(data).with_warmup(5000).warmup_steps == 0
