"""Attacks on settings (issue 14, item 11 and the config half of 13): a value of the wrong type or beyond any
sensible size, wherever it enters (a flag, a config, a stored file), is refused with its range in the message."""

import dataclasses
import math
import re

import pytest

from attacks.harness import refused, sda_limited
from sda.config import RANGES, AudioConfig, VQVAEConfig, check_setting
from sda.errors import ConfigError

AUDIO_FIELDS = {f.name for f in dataclasses.fields(AudioConfig)}


def with_setting(name, value) -> VQVAEConfig:
    if name in AUDIO_FIELDS:
        return dataclasses.replace(VQVAEConfig(), audio=dataclasses.replace(AudioConfig(), **{name: value}))
    return dataclasses.replace(VQVAEConfig(), **{name: value})


CONFIG_SETTINGS = sorted(n for n in RANGES if n in AUDIO_FIELDS | {f.name for f in dataclasses.fields(VQVAEConfig)})


@pytest.mark.parametrize("name", CONFIG_SETTINGS)
def test_every_setting_has_an_upper_bound_and_names_it(name):
    limits = RANGES[name]
    too_big = int(limits.high) + 1 if limits.whole else limits.high * 2 + 1
    with pytest.raises(ConfigError, match=rf"{name}=.* is out of range: expected .*{re.escape(limits.describe())}"):
        with_setting(name, too_big).validate()


@pytest.mark.parametrize("name", CONFIG_SETTINGS)
@pytest.mark.parametrize("junk", [True, "3", [3], {"a": 1}, math.nan, math.inf, -math.inf, 10**400],
                         ids=["bool", "str", "list", "dict", "nan", "inf", "-inf", "10**400"])
def test_every_setting_refuses_values_of_the_wrong_type(name, junk):
    with pytest.raises(ConfigError, match=f"{name}="):
        with_setting(name, junk).validate()


@pytest.mark.parametrize("name", sorted(n for n in CONFIG_SETTINGS if RANGES[n].whole))
def test_a_float_is_not_a_whole_number(name):
    value = float(VQVAEConfig().to_dict().get(name) or RANGES[name].low) if name not in AUDIO_FIELDS else \
        float(getattr(AudioConfig(), name))
    with pytest.raises(ConfigError, match=f"{name}="):
        with_setting(name, value).validate()


def test_a_stored_config_with_floats_for_integers_is_refused_not_a_type_error():
    stored = VQVAEConfig().to_dict()
    stored["rvq_levels"] = 3.0
    with pytest.raises(ConfigError, match="rvq_levels=3.0"):
        VQVAEConfig.from_dict(stored)
    stored = VQVAEConfig().to_dict()
    stored["hidden_channels"] = 100_000  # the 120 GB model of the issue
    with pytest.raises(ConfigError, match="hidden_channels=100000 .*to 1024"):
        VQVAEConfig.from_dict(stored)


def test_run_options_are_checked_by_the_same_ranges():
    assert check_setting("checkpoint_every", None) is None  # automatic
    for name in ("health_every", "checkpoint_every", "preview_every", "timeout_s"):
        with pytest.raises(ConfigError, match=f"{name}="):
            check_setting(name, 10**20)


@pytest.mark.parametrize("flag, value, words", [
    ("--epochs", "100000000000000000000", ["--epochs", "out of range", "from 1 to 100000"]),
    ("--epochs", "9" * 5000, ["--epochs", "5000 characters", "whole number"]),
    ("--seed", "100000000000000000000", ["--seed", "out of range", "from 0 to 4294967295"]),
    ("--batch-size", "1e3", ["--batch-size", "is not a whole number"]),
    ("--lr", "nan", ["--lr", "above 0 and below 1"]),
    ("--commitment-weight", "inf", ["--commitment-weight", "at most 10"]),
    ("--codebook-size", "1000000", ["--codebook-size", "to 8192"]),
    ("--health-every", "-1", ["--health-every", "from 1"]),
    ("--dist-timeout", "1e400", ["--dist-timeout", "at most 86400"]),
])
def test_huge_or_malformed_flags_exit_2_with_the_range(tmp_path, flag, value, words):
    result = sda_limited("train", tmp_path, flag, value, "--out", tmp_path / "out", timeout=60)
    refused(result, *words)
    assert not (tmp_path / "out").exists()
