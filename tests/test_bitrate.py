"""sda.model.bitrate and sda.model.health.codes_carrying on hand-made counts: the figures codec papers report."""

import dataclasses
import math

import pytest
import torch

from sda.config import AudioConfig
from sda.model.bitrate import bitrate, bits_per_second, entropy_bits, frame_rate
from sda.model.health import codes_carrying, level_health
from tests.helpers import SMALL

# 16000 Hz, hop 200, downsample 4: 20 code positions a second, a round figure to check by hand.
CONFIG = dataclasses.replace(SMALL, audio=dataclasses.replace(SMALL.audio, sample_rate=16000, hop_length=200),
                             downsample=4, rvq_levels=2, codebook_size=8)


def test_the_frame_rate_is_code_positions_per_second():
    assert frame_rate(CONFIG) == 20.0
    default = dataclasses.replace(SMALL, audio=AudioConfig(), downsample=4)
    assert frame_rate(default) == pytest.approx(22050 / 1024)


def test_even_use_of_every_code_is_the_nominal_bitrate():
    even = level_health(torch.full((8,), 5))
    rate = bitrate(CONFIG, [even, even])
    assert entropy_bits(even) == pytest.approx(3.0)
    assert rate.nominal_bps == 2 * 3 * 20 and rate.effective_bps == pytest.approx(120.0)
    assert rate.share == pytest.approx(1.0) and rate.level_bps(1) == pytest.approx(60.0)


def test_skewed_and_collapsed_levels_cost_their_entropy():
    # Level 1: probabilities 1/2, 1/4, 1/4 -> 1.5 bits; level 2: one code only -> 0 bits.
    skewed, collapsed = level_health(torch.tensor([2, 1, 1, 0, 0, 0, 0, 0])), level_health(torch.tensor([9] + [0] * 7))
    rate = bitrate(CONFIG, [skewed, collapsed])
    assert rate.entropies == pytest.approx((1.5, 0.0))
    assert rate.effective_bps == pytest.approx(20 * 1.5) and rate.share == pytest.approx(1.5 / 6)
    assert rate.to_dict()["level_bps"] == pytest.approx([30.0, 0.0])


def test_a_level_that_counted_nothing_has_no_entropy():
    empty = level_health(torch.zeros(8))
    assert entropy_bits(empty) == 0.0 and bitrate(CONFIG, [empty, empty]).effective_bps == 0.0


def test_the_bitrate_line_reads_as_codec_papers_write_it():
    rate = bitrate(CONFIG, [level_health(torch.full((8,), 1))] * 2)
    assert rate.line() == "20.0 codes/s a level; 120 bit/s nominal, 120 bit/s effective (100.0%)"
    assert bits_per_second(1290.4) == "1.29 kbit/s" and bits_per_second(999.4) == "999 bit/s"


@pytest.mark.parametrize("counts, share, codes", [
    ([5, 5, 5, 5], 0.5, 2),        # even use: half the codes carry half the data
    ([97, 1, 1, 1], 0.5, 1),       # one code carries nearly everything
    ([3, 1, 0, 0], 0.75, 1),       # exactly at the share: that code is enough
    ([3, 1, 0, 0], 0.76, 2),
    ([0, 0, 0, 0], 0.5, 0),        # nothing counted
    ([1] * 128, 0.5, 64),
])
def test_how_few_codes_carry_a_share_of_the_data(counts, share, codes):
    assert codes_carrying(torch.tensor(counts), share) == codes


def test_entropy_is_the_log2_of_perplexity():
    h = level_health(torch.tensor([4, 2, 1, 1]))
    p = torch.tensor([4, 2, 1, 1]) / 8
    assert entropy_bits(h) == pytest.approx(-(p * p.log2()).sum().item()) and math.isclose(2 ** entropy_bits(h),
                                                                                          h.perplexity)
