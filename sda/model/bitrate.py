"""What the codes cost in bits, as codec papers report it (EnCodec, DAC, SoundStream).

    frame rate     = sample_rate / (hop_length x downsample)      code positions per second, per level
    nominal        = levels x log2 K x frame rate                 bit/s if every code were equally likely
    effective      = frame rate x sum over levels of H_l          bit/s an entropy coder could reach, where
    H_l            = log2(perplexity_l)                           the usage entropy of level l, in bits a position
    effective share = sum of H_l / (levels x log2 K)              1.0: every code of every level equally used

    rate = bitrate(config, snapshot)        # snapshot: list of LevelHealth (sda.model.health)
    rate.effective_bps, rate.share, rate.level_bps(0)
    rate.line(), rate.level_text(0)         # the words every frontend shows: the end report, `sda info`, the live rows
    Bitrate.from_dict(metadata["bitrate"])  # the model file's record back; ValueError if it is not one sda writes

The entropies are those of the health window the snapshot covers, so the effective figure is of the codes the
training data uses now; a level that counted nothing has entropy 0.
"""

import math
from dataclasses import dataclass

from sda.config import VQVAEConfig
from sda.model.health import LevelHealth


def frame_rate(config: VQVAEConfig) -> float:
    """Code positions per second of audio, per level."""
    return config.audio.sample_rate / (config.audio.hop_length * config.downsample)


def entropy_bits(health: LevelHealth) -> float:
    """The usage entropy of a level, in bits (perplexity = 2 ** bits); 0 when nothing was counted."""
    return math.log2(health.perplexity) if health.perplexity > 0 else 0.0


@dataclass(frozen=True)
class Bitrate:
    frame_rate: float  # code positions per second, per level
    codebook_bits: float  # log2 K
    entropies: tuple[float, ...]  # bits per position, one per level

    @property
    def levels(self) -> int:
        return len(self.entropies)

    @property
    def nominal_bps(self) -> float:
        return self.levels * self.codebook_bits * self.frame_rate

    @property
    def effective_bps(self) -> float:
        return self.frame_rate * sum(self.entropies)

    @property
    def share(self) -> float:
        """Effective over nominal, in [0, 1]."""
        return sum(self.entropies) / (self.levels * self.codebook_bits) if self.levels and self.codebook_bits else 0.0

    def level_bps(self, level: int) -> float:
        return self.frame_rate * self.entropies[level]

    def line(self) -> str:
        """'21.5 codes/s a level; 452 bit/s nominal, 401 bit/s effective (88.7%)'."""
        return (f"{self.frame_rate:.1f} codes/s a level; {bits_per_second(self.nominal_bps)} nominal, "
                f"{bits_per_second(self.effective_bps)} effective ({100 * self.share:.1f}%)")

    def level_text(self, level: int) -> str:
        """'5.6 bits 121 bit/s': a level's entropy a position and its bitrate, of one width for levels under 10 bits
        and 1000 bit/s (at the default 21.5 codes/s, every level of a codebook of up to 1024 codes), so rows align."""
        return f"{self.entropies[level]:.1f} bits {bits_per_second(self.level_bps(level)):>9}"

    def effective_line(self) -> str:
        """'effective 401 bit/s of 452 bit/s nominal (88.7%) at 21.5 codes/s': the total under a level table."""
        return (f"effective {bits_per_second(self.effective_bps)} of {bits_per_second(self.nominal_bps)} nominal "
                f"({100 * self.share:.1f}%) at {self.frame_rate:.1f} codes/s")

    def to_dict(self) -> dict:
        """The model metadata's "bitrate" record (SDA_FORMAT.md): the derived figures too, for other tools."""
        return {"frame_rate": self.frame_rate, "codebook_bits": self.codebook_bits,
                "entropy_bits": list(self.entropies), "nominal_bps": self.nominal_bps,
                "effective_bps": self.effective_bps, "effective_share": self.share,
                "level_bps": [self.level_bps(i) for i in range(self.levels)]}

    @classmethod
    def from_dict(cls, data: dict) -> "Bitrate":
        """The figures it was made of; the derived ones are recomputed. Raises ValueError on a record sda did not
        write: a crafted file must not make a report print nonsense or fail on a type."""
        try:
            frame, bits, entropies = data["frame_rate"], data["codebook_bits"], data["entropy_bits"]
        except (KeyError, TypeError):
            raise ValueError("the bitrate record lacks frame_rate, codebook_bits or entropy_bits") from None
        if not (_figure(frame) and _figure(bits) and isinstance(entropies, list) and 0 < len(entropies) <= 64
                and all(_figure(h) and h <= bits + 1e-6 for h in entropies)):
            raise ValueError(f"bitrate record {str(data)[:80]} is not one sda writes")
        return cls(float(frame), float(bits), tuple(float(h) for h in entropies))


def _figure(value) -> bool:
    """A finite number of at least 0 (not a bool, which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def bitrate(config: VQVAEConfig, snapshot: list[LevelHealth]) -> Bitrate:
    """The bitrate of a health snapshot [one LevelHealth per level] of a model with this config."""
    k = snapshot[0].codebook_size if snapshot else (config.codebook_size or 0)
    return Bitrate(frame_rate(config), math.log2(k) if k > 1 else 0.0, tuple(entropy_bits(h) for h in snapshot))


def bits_per_second(bps: float) -> str:
    """'452 bit/s', '1.29 kbit/s'."""
    return f"{bps:.0f} bit/s" if bps < 1000 else f"{bps / 1000:.3g} kbit/s"

