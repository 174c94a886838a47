"""sda.cli.progress: the terminal view of training events (bars in place on a terminal, plain lines otherwise)."""

import dataclasses
import io
from pathlib import Path

import pytest
import torch

from sda.cli.progress import NO_BITRATE_YET, RED, RESET, YELLOW, Progress
from sda.model.bitrate import Bitrate
from sda.model.health import level_health
from sda.train.engine import RunOptions, train
from sda.train.events import Alert, Checkpoint, Epoch, Error, Health, Recovered, Step
from tests.helpers import DIP, SMALL

HOSTILE = "kick\x1b]52;c;aGk=\x07.wav"  # a clipboard write, as a file name may hold it


def shown(*events, interactive=False) -> str:
    out = io.StringIO()
    progress = Progress(interactive=interactive, out=out)
    for event in events:
        progress.show(event)
    progress.close()
    return out.getvalue()


@pytest.mark.parametrize("interactive", [True, False])
def test_the_cli_view_shows_every_level_in_place_on_a_terminal_and_as_lines_otherwise(folder, tmp_path, interactive):
    from sda.cli.progress import Progress

    out = io.StringIO()
    progress = Progress(interactive=interactive, out=out)
    for event in train(dataclasses.replace(SMALL, epochs=2), RunOptions(folder, tmp_path, "p", health_every=1)):
        progress.show(event)
    progress.close()
    text = out.getvalue()
    assert "6 usable audio files" in text and "Training finished: 2 of 2 epochs" in text
    for level in (1, 2, 3):
        assert f"level {level}  util" in text
    if interactive:  # tqdm bars: the level lines are rewritten with cursor movements, no per-step log lines
        assert "epoch 1/2:" in text and "\x1b[A" in text and "health over" not in text
    else:
        assert "\x1b[" not in text and "step 1 health over 1 step:" in text


def test_plain_output_has_no_colour_and_no_bar():
    step = Step(epoch=1, step=1, epoch_step=1, steps_per_epoch=4, total_steps=8, loss=1.0, reconstruction=0.9,
                commitment=0.1, skipped=False, elapsed_s=1.0, eta_s=7.0)
    text = shown(step, Alert("level 2 is low"))
    assert text == "WARNING: level 2 is low\n"  # no line per step, no escape sequence


def test_on_a_terminal_a_warning_is_yellow():
    assert shown(Alert("level 2 is low"), interactive=True) == f"{YELLOW}WARNING: level 2 is low{RESET}\n"


def test_a_message_from_a_file_reaches_the_terminal_with_its_escapes_visible():
    text = shown(Alert(f"cannot read {HOSTILE}"), interactive=True)
    assert "\\x1b]52;c;aGk=\\x07.wav" in text and "\x1b]52" not in text and "\x07" not in text


def test_an_error_goes_to_stderr_in_red_on_a_terminal_and_plain_otherwise(capsys):
    shown(Error(f"bad {HOSTILE}", "data"), interactive=True)
    assert capsys.readouterr().err == f"{RED}sda: error: bad kick\\x1b]52;c;aGk=\\x07.wav{RESET}\n"
    shown(Error("bad input", "settings"))
    assert capsys.readouterr().err == "sda: error: bad input\n"


def test_a_recovery_names_the_warning_it_resolves():
    assert shown(Recovered(DIP)) == "level 1 recovered at step 48 (97.0% now): the warning of step 20 is resolved\n"


def test_health_as_lines_one_per_level_with_a_verdict_only_when_judged():
    levels = [level_health(torch.tensor([5, 0, 0, 0]), 0), level_health(torch.tensor([1, 1, 1, 1]), 1)]
    judged = shown(Health(epoch=1, step=6, levels=levels, window_steps=3))
    assert judged.splitlines()[0] == "  step 6 health over 3 steps:"
    assert "level 1  util  25.0%" in judged and "<< under 30%" in judged.splitlines()[1]
    assert "level 2  util 100.0%" in judged and "<<" not in judged.splitlines()[2]
    early = shown(Health(epoch=1, step=6, levels=levels, window_steps=1, judged=False))
    assert "<<" not in early and early.count("(too few steps to judge)") == 2


def test_epochs_and_interval_checkpoints_are_shown_and_the_final_ones_left_to_the_report():
    losses = {"loss": 1.5, "reconstruction": 1.25, "commitment": 1.0}
    interval = Checkpoint(path=Path("m.checkpoint.sda"), epoch=2, step=10, reason="interval")
    text = shown(Epoch(epoch=2, epochs=5, train=losses, validation=losses), interval,
                 dataclasses.replace(interval, reason="end"))
    assert text == ("epoch 2/5: train loss 1.5000 (recon 1.2500, commit 1.0000), validation loss 1.5000 "
                    "(recon 1.2500)\n  checkpoint: m.checkpoint.sda\n")


def test_health_rows_give_each_levels_bits_and_a_total_bitrate_line():
    levels = [level_health(torch.tensor([5, 0, 0, 0]), 0), level_health(torch.tensor([1, 1, 1, 1]), 1)]
    rate = Bitrate(frame_rate=21.5, codebook_bits=2.0, entropies=(0.0, 2.0))
    lines = shown(Health(epoch=1, step=6, levels=levels, window_steps=3, bitrate=rate)).splitlines()
    assert "perplexity    1.0  0.0 bits   0 bit/s  dead" in lines[1]
    assert "perplexity    4.0  2.0 bits  43 bit/s  dead" in lines[2]
    assert lines[3] == "    bitrate: 21.5 codes/s a level; 86 bit/s nominal, 43 bit/s effective (50.0%)"


def test_in_the_warm_up_the_rows_say_so_and_show_no_bitrate_of_zero():
    nothing = [level_health(torch.zeros(4, dtype=torch.int64), i) for i in range(2)]
    rate = Bitrate(frame_rate=21.5, codebook_bits=2.0, entropies=(0.0, 0.0))
    text = shown(Health(epoch=1, step=1, levels=nothing, window_steps=1, warming_up=True, bitrate=rate))
    assert "warming up" in text and "bit/s" not in text and f"    {NO_BITRATE_YET}" in text


def test_on_a_terminal_the_total_bitrate_is_a_row_under_the_levels():
    step = Step(epoch=1, step=1, epoch_step=1, steps_per_epoch=4, total_steps=8, loss=1.0, reconstruction=0.9,
                commitment=0.1, skipped=False, elapsed_s=1.0, eta_s=7.0)
    levels = [level_health(torch.tensor([1, 1, 1, 1]), i) for i in range(2)]
    rate = Bitrate(frame_rate=21.5, codebook_bits=2.0, entropies=(2.0, 2.0))
    out = io.StringIO()
    progress = Progress(interactive=True, out=out)
    progress.levels = 2
    progress.latest = ["level 1", "level 2", NO_BITRATE_YET]
    progress.show(step)
    progress.show(Health(epoch=1, step=1, levels=levels, window_steps=1, bitrate=rate))
    assert [bar.desc for bar in progress.level_lines][-1] == "  bitrate: 21.5 codes/s a level; 86 bit/s nominal, " \
                                                             "86 bit/s effective (100.0%)"
    progress.close()
