"""Listening in the Models tab without a server: sda.ui.listen (every depth through sda.model.codec, the files it
writes and prunes), sda.ui.spectrogram (the SVG and its PNG heat maps) and the words of sda.ui.render and
sda.report that label them."""

import base64
import io
import math
import re

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.transforms as AT
from PIL import Image

from sda import report
from sda.config import AudioConfig
from sda.format.modelfile import load_model
from sda.model import codec
from sda.model.quality import Quality
from sda.ui.listen import KEPT, Take, TakeStore, listen, safe_stem, take_name
from sda.ui.render import depth_words, listening_markdown, take_label, takes_html
from sda.ui.spectrogram import MAGMA, MAX_COLUMNS, Panel, colours, frequency_fraction, reduced, spectrogram_html
from tests.helpers import MARK, trained_model

AUDIO = AudioConfig(sample_rate=16000, n_mels=32)


@pytest.fixture(scope="module")
def model(folder, tmp_path_factory):
    return load_model(trained_model(folder, tmp_path_factory.mktemp("models")))[0]


def pngs(html: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(data)))
            for data in re.findall(r'class="sda-spectrogram-map"[^>]*href="data:image/png;base64,([^"]+)"', html)]


# ----------------------------------------------------------------------------------------------
# sda.ui.spectrogram


def test_the_colour_map_runs_from_magmas_first_anchor_to_its_last_and_clips_outside():
    ends = colours(np.array([-1.0, 0.0, 1.0, 2.0]))
    assert ends.dtype == np.uint8 and ends.shape == (4, 3)
    assert (ends[0] == MAGMA[0]).all() and (ends[1] == MAGMA[0]).all()
    assert (ends[2] == MAGMA[-1]).all() and (ends[3] == MAGMA[-1]).all()
    brightness = colours(np.linspace(0, 1, 50)).astype(int).sum(axis=1)
    assert (np.diff(brightness) >= 0).all()  # darker to lighter all the way: louder always reads brighter


def test_long_spectrograms_are_reduced_by_the_loudest_frame_of_each_run():
    mel = torch.full((4, 10_000), -10.0)
    mel[2, 7_777] = 3.0  # one click
    out = reduced(mel)
    assert out.shape == (4, math.ceil(10_000 / math.ceil(10_000 / MAX_COLUMNS))) and out.shape[1] <= MAX_COLUMNS
    assert out.max() == 3.0 and (out[2] == 3.0).sum() == 1
    assert reduced(mel[:, :100]).shape == (4, 100)  # short ones are drawn frame by frame


def test_the_spectrogram_has_a_heat_map_per_panel_on_one_scale_with_labelled_axes_and_escaped_titles():
    quiet, loud = torch.full((AUDIO.n_mels, 50), -8.0), torch.full((AUDIO.n_mels, 50), -8.0)
    loud[0, :] = 0.0  # the lowest mel bin, loud all along
    html = spectrogram_html((Panel(f"original: {MARK}", loud), Panel("reconstruction", quiet)), AUDIO, 0.8)
    assert 'data-panels="2"' in html and "<img" not in html and "&lt;img src=x" in html
    maps = pngs(html)
    assert [m.size for m in maps] == [(50, AUDIO.n_mels)] * 2
    top_row, bottom_row = np.asarray(maps[0])[0], np.asarray(maps[0])[-1]
    assert (bottom_row == MAGMA[-1]).all() and (top_row != MAGMA[-1]).any()  # low frequencies at the bottom
    assert (np.asarray(maps[1]) == np.asarray(maps[0])[0, 0]).all()  # -69 dB on the shared scale, not renormalised
    for words in ("frequency (Hz)", "time (s)", ">0 dB<", ">-80 dB<", "re the loudest bin", ">0.8<", ">1k<"):
        assert words in html, words
    assert ">10k<" not in html  # over the 8 kHz Nyquist of 16 kHz audio


def test_silence_is_drawn_dark():
    silent = torch.full((AUDIO.n_mels, 20), math.log(1e-5))  # LogMel's floor everywhere
    assert (np.asarray(pngs(spectrogram_html((Panel("silence", silent),), AUDIO, 0.2))[0]) == MAGMA[0]).all()


def test_frequencies_lie_on_the_mel_axis_in_order_and_inside_the_panel():
    fractions = [frequency_fraction(f, AUDIO) for f in (100, 1000, 4000, 7000)]
    assert fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] < 1
    # Each row is drawn where LogMel's own filterbank puts its band: bin i peaks at the frequency drawn at row i.
    filterbank = AT.MelSpectrogram(sample_rate=AUDIO.sample_rate, n_fft=AUDIO.n_fft, n_mels=AUDIO.n_mels).mel_scale.fb
    for i in range(2, AUDIO.n_mels):  # the lowest bands are a single FFT bin or two wide
        peak = filterbank[:, i].argmax().item() * AUDIO.sample_rate / AUDIO.n_fft
        assert abs(frequency_fraction(peak, AUDIO) * AUDIO.n_mels - (i + 0.5)) < 0.5, i


# ----------------------------------------------------------------------------------------------
# sda.ui.listen


def test_listening_goes_through_the_codec_at_every_depth_and_writes_each_wav(model, folder, tmp_path):
    wave = torch.randn(2, 12_345) * 0.1
    calls = []
    heard = listen(model, wave, 44100, f"{MARK}.wav", tmp_path, lambda done, total: calls.append((done, total)))
    levels = model.config.rvq_levels
    assert [t.levels for t in heard.takes] == list(range(1, levels + 1)) and heard.full is heard.takes[-1]
    assert calls == [(i, levels) for i in range(levels + 1)]
    assert (heard.seconds, heard.rate, heard.channels) == (12_345 / 44100, 44100, 2)
    for take in heard.takes:
        expected = codec.reconstruct(model, wave, 44100, levels=take.levels)
        assert take.quality == expected.quality and take.gain_db == expected.gain_db
        info = sf.info(str(take.path))
        assert (info.samplerate, info.channels, info.frames) == (44100, 1, 12_345)
        assert take.path.parent == tmp_path and "<" not in take.path.name
    assert heard.positions == codec.encode(model, wave, 44100).shape[1]
    assert sf.info(str(heard.original)).channels == 2  # the original as it was given
    assert 'data-panels="2"' in heard.spectrogram and len(pngs(heard.spectrogram)) == 2


def test_the_store_keeps_the_last_few_reconstructions_and_removes_all_when_closed():
    store = TakeStore()
    folders = [store.new_folder() for _ in range(KEPT + 2)]
    assert [f.exists() for f in folders] == [False, False] + [True] * KEPT
    assert all(f.parent == store.root for f in folders)
    store.close()
    assert not store.root.exists()


def test_download_names_are_plain_whatever_the_file_was_called():
    assert safe_stem(f"{MARK}.wav") == "img_src_x_onerror_window.__xss_1"
    assert safe_stem("../../etc/passwd") == "passwd" and safe_stem("\x1b]52;c;.wav") == "52_c"
    assert safe_stem("...") == "audio" and len(safe_stem("a" * 500 + ".wav")) == 60
    assert [take_name("kick", i, 3) for i in (1, 2, 3)] == ["kick.first-1-level.wav", "kick.first-2-levels.wav",
                                                            "kick.reconstruction.wav"]


# ----------------------------------------------------------------------------------------------
# The words: sda.ui.render and sda.report


def takes(*figures):
    return tuple(Take(i + 1, None, Quality(*f), 0.0, 0.0) for i, f in enumerate(figures))


def test_each_depth_is_a_row_with_its_figures_and_what_its_level_took_off_the_l1():
    html = takes_html(takes((0.9, 2.5, -30.0), (0.7, 2.1, -20.0), (0.75, 2.0, math.nan), (0.7501, 2.0, 1.0)))
    rows = re.findall(r'<tr class="sda-take" data-levels="(\d)">(.*?)</tr>', html)
    assert [n for n, _ in rows] == ["1", "2", "3", "4"]
    cells = [re.findall(r"<td>(.*?)</td>", row) for _, row in rows]
    assert cells[0] == ["level 1 only", "0.900", "—", "2.50", "-30.0"]
    assert cells[1] == ["levels 1–2", "0.700", "0.200", "2.10", "-20.0"]
    assert cells[2] == ["levels 1–3", "0.750", "-0.050", "2.00", "n/a"]  # a level that made it worse says so
    assert cells[3][:3] == ["all 4 levels", "0.750", "0.000"]  # -0.0001 is no change, not -0.000
    assert "SI-SDR (dB)" in html and "log-mel L1" in html


def test_player_labels_and_the_summary_name_every_figure_and_escape_the_file_name(tmp_path):
    (one, full) = takes((0.9, 2.5, -30.0), (0.7, 2.1, math.nan))
    assert take_label(one, 2) == "Level 1 only: log-mel L1 0.900, STFT distance 2.50, SI-SDR -30.0 dB"
    assert take_label(full, 2).endswith("SI-SDR n/a (silent input)")
    assert depth_words(2, 4) == "levels 1–2" and depth_words(4, 4) == "all 4 levels"
    from sda.ui.listen import Listening

    heard = Listening(f"{MARK}*x*.wav", 1.5, 48000, 2, 17, 64, tmp_path, (one, full), "")
    line = listening_markdown(heard)
    assert "<img" not in line and "&lt;img" in line and r"\*x\*" in line
    assert "1.50 s, 48000 Hz stereo → a code grid of 2 levels × 17 time positions (64 codes per level)" in line
    assert "no gain needed" in line and "no limiting needed" in line


def test_the_gain_and_any_limiting_are_said_in_db():
    assert report.loudness_text(6.04, 0.0) == ("gain +6.0 dB to match the input's loudness (RMS); no limiting needed "
                                               "(no sample near full scale)")
    assert report.loudness_text(-2.5, -1.26) == ("gain -2.5 dB to match the input's loudness (RMS), then attenuated by "
                                                 "1.3 dB so that no sample clips")
    assert report.quality_text(Quality(math.nan, math.nan, math.nan)).count("n/a (silent input)") == 3


def test_a_model_without_codes_says_when_it_was_saved_and_what_to_do():
    from sda.format.modelfile import no_codes_message

    words = no_codes_message("early.sda", {"weights": {"step": 2}}, 5, "open it here again")
    assert words.startswith("early.sda was saved during warm-up (step 2 of 5)") and "no codes yet" in words
    assert "--resume" in words and words.endswith("then open it here again")
    assert no_codes_message("m.sda", {}, 5, "reconstruct").endswith("then reconstruct")  # a file without a step
