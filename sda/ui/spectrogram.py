"""Log-mel spectrograms as one SVG for gr.HTML: each panel a PNG heat map (numpy -> PIL) inside labelled axes.

    html = spectrogram_html((Panel("original", mel_in), Panel("reconstruction", mel_out)), audio, seconds)

Every panel shares one colour scale: 0 dB is the loudest bin of all of them, and RANGE_DB below it is the floor,
so a reconstruction that lost energy reads darker than its original rather than being renormalised away. The
frequency axis is the mel scale (torchaudio's HTK formula, which sda.data.audio.LogMel uses) labelled in Hz,
time is in seconds. The colour map is fixed (magma, from its published anchors), never a value from a file.
Panels wider than MAX_COLUMNS frames are reduced by taking each run's loudest frame, so a click stays visible.
"""

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from sda.config import AudioConfig
from sda.data.audio import LOG_FLOOR
from sda.ui.charts import nice_ticks, text

RANGE_DB = 80.0  # the floor of the colour scale, below the loudest bin
MAX_COLUMNS = 800  # frames per panel at most: the drawing is under 1000 px wide, more only costs bytes
WIDTH, PANEL_HEIGHT = 760, 170
LEFT, RIGHT, TOP, GAP, BOTTOM = 58, 92, 22, 48, 34  # RIGHT holds the colour bar and its labels
MIN_TICK_GAP = 11  # px between frequency labels
DB_PER_NEPER = 20 / math.log(10)  # LogMel is the natural log of a magnitude: x this is dB
FLOOR_DB = 20 * math.log10(LOG_FLOOR)  # what LogMel gives silence
FREQUENCY_TICKS = (100, 200, 500, 1000, 2000, 5000, 10_000, 20_000)  # Hz, those under the Nyquist shown
# magma (matplotlib's perceptually uniform map), 9 evenly spaced anchors, black to pale yellow.
MAGMA = np.array([(0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122), (229, 80, 100),
                  (251, 135, 97), (254, 194, 135), (252, 253, 191)], dtype=np.float64)


@dataclass(frozen=True)
class Panel:
    title: str  # shown escaped: it may name a user's file
    log_mel: torch.Tensor  # [n_mels, T] natural-log magnitudes, as sda.data.audio.LogMel gives


def colours(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped) -> uint8 RGB [..., 3] through MAGMA."""
    position = np.clip(values, 0.0, 1.0) * (len(MAGMA) - 1)
    low = np.minimum(position.astype(np.int64), len(MAGMA) - 2)
    frac = (position - low)[..., None]
    return np.round(MAGMA[low] * (1 - frac) + MAGMA[low + 1] * frac).astype(np.uint8)


def reduced(log_mel: torch.Tensor, columns: int = MAX_COLUMNS) -> np.ndarray:
    """[n_mels, T] -> float64 [n_mels, min(T, columns)]: each column the loudest of its run of frames."""
    values = log_mel.detach().to("cpu", torch.float64)
    frames = values.shape[1]
    if frames <= columns:
        return values.numpy()
    group = math.ceil(frames / columns)
    padded = torch.nn.functional.pad(values, (0, -frames % group), value=-math.inf)
    return padded.view(values.shape[0], -1, group).amax(dim=2).numpy()


def heat_map_png(db: np.ndarray, top_db: float) -> bytes:
    """dB [n_mels, T] -> a PNG, the lowest mel bin at the bottom, top_db - RANGE_DB .. top_db over the map."""
    scaled = (db - (top_db - RANGE_DB)) / RANGE_DB
    image = Image.fromarray(colours(scaled[::-1]), mode="RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def mel(frequency: float) -> float:
    """HTK mel of a frequency in Hz (torchaudio's default mel_scale)."""
    return 2595 * math.log10(1 + frequency / 700)


def frequency_fraction(frequency: float, audio: AudioConfig) -> float:
    """Where a frequency lies on the panel's height, 0 at the bottom row's centre... 1 at the top's: mel bin i
    is centred on mel (i + 1) x top / (n_mels + 1) (f_min 0, f_max the Nyquist) and drawn as row i of n_mels."""
    n = audio.n_mels
    row = mel(frequency) * (n + 1) / mel(audio.sample_rate / 2) - 1
    return (row + 0.5) / n


def spectrogram_html(panels: Sequence[Panel], audio: AudioConfig, seconds: float) -> str:
    """The panels stacked, one colour scale, time (s) under each, frequency (Hz) left, a dB colour bar right."""
    dbs = [reduced(p.log_mel) * DB_PER_NEPER for p in panels]
    finite = [d[np.isfinite(d)] for d in dbs]
    top = max((float(f.max()) for f in finite if f.size), default=FLOOR_DB)
    if top <= FLOOR_DB + 1:  # silence (every bin at LogMel's floor) is drawn dark, not as the loudest colour
        top = FLOOR_DB + RANGE_DB
    height = TOP + len(panels) * (PANEL_HEIGHT + GAP) - GAP + BOTTOM
    parts = []
    for i, (panel, db) in enumerate(zip(panels, dbs, strict=True)):
        y = TOP + i * (PANEL_HEIGHT + GAP)
        parts.append(_panel(panel.title, db, top, y, audio, seconds))
    parts.append(_colour_bar(TOP, height - BOTTOM - TOP))
    return (f'<svg class="sda-chart sda-spectrogram" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'data-panels="{len(panels)}" aria-label="log-mel spectrograms">{"".join(parts)}</svg>')


def _panel(title: str, db: np.ndarray, top: float, y: float, audio: AudioConfig, seconds: float) -> str:
    width = WIDTH - LEFT - RIGHT
    png = base64.b64encode(heat_map_png(db, top)).decode("ascii")
    out = [f'<text class="sda-chart-title" x="{LEFT}" y="{y - 6}">{text(title)}</text>',
           f'<image class="sda-spectrogram-map" x="{LEFT}" y="{y}" width="{width}" height="{PANEL_HEIGHT}" '
           f'preserveAspectRatio="none" href="data:image/png;base64,{png}"/>',
           f'<rect class="sda-chart-frame" x="{LEFT}" y="{y}" width="{width}" height="{PANEL_HEIGHT}" fill="none"/>']
    last = math.inf
    for frequency in (f for f in FREQUENCY_TICKS if f < audio.sample_rate / 2):
        fraction = frequency_fraction(frequency, audio)
        ty = y + PANEL_HEIGHT * (1 - fraction)
        if 0 <= fraction <= 1 and last - ty >= MIN_TICK_GAP:  # low ticks crowd on a mel axis: skip those
            last = ty
            label = f"{frequency // 1000}k" if frequency >= 1000 else str(frequency)
            out.append(f'<line class="sda-chart-frame" x1="{LEFT - 3}" x2="{LEFT}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
                       f'<text class="sda-chart-tick" x="{LEFT - 5}" y="{ty + 3.5:.1f}" text-anchor="end">'
                       f"{label}</text>")
    out.append(f'<text class="sda-chart-tick" transform="translate(12 {y + PANEL_HEIGHT / 2:.0f}) rotate(-90)" '
               'text-anchor="middle">frequency (Hz)</text>')
    base = y + PANEL_HEIGHT
    ticks = nice_ticks(0, seconds, 6) if seconds > 0 else [0.0]
    for tick in (t for t in ticks if t <= seconds + 1e-9):
        tx = LEFT + width * (tick / seconds if seconds > 0 else 0)
        out.append(f'<line class="sda-chart-frame" x1="{tx:.1f}" x2="{tx:.1f}" y1="{base}" y2="{base + 3}"/>'
                   f'<text class="sda-chart-tick" x="{tx:.1f}" y="{base + 14}" text-anchor="middle">{tick:g}</text>')
    out.append(f'<text class="sda-chart-tick" x="{LEFT + width}" y="{base + 26}" text-anchor="end">time (s)</text>')
    return "".join(out)


def _colour_bar(y: float, height: float) -> str:
    """A vertical gradient of the colour map, labelled in dB below the loudest bin."""
    x = WIDTH - RIGHT + 14
    ramp = colours(np.linspace(1, 0, 64)[:, None].repeat(4, axis=1))
    out = io.BytesIO()
    Image.fromarray(ramp, mode="RGB").save(out, format="PNG")
    png = base64.b64encode(out.getvalue()).decode("ascii")
    parts = [f'<image x="{x}" y="{y}" width="12" height="{height:.0f}" preserveAspectRatio="none" '
             f'href="data:image/png;base64,{png}"/>',
             f'<rect class="sda-chart-frame" x="{x}" y="{y}" width="12" height="{height:.0f}" fill="none"/>']
    for db in range(0, -int(RANGE_DB) - 1, -20):
        ty = y + height * (-db / RANGE_DB)
        parts.append(f'<text class="sda-chart-tick" x="{x + 16}" y="{ty + 3.5:.1f}">{db if db else "0"} dB</text>')
    parts.append(f'<text class="sda-chart-tick" transform="translate({WIDTH - 6} {y + height / 2:.0f}) rotate(-90)" '
                 'text-anchor="middle">level, re the loudest bin</text>')
    return "".join(parts)
