"""A trained ConvVQVAE as torch.export programs that run with torch alone: no sda, no torchaudio.

    programs = export_programs(model)        # {"encode": ExportedProgram, "decode_mel": ..., "decode": ...}
    programs["encode"].module()(wave)        # wave [S] float32 mono at the model's rate -> codes [L, T'] int64
    programs["decode_mel"].module()(codes)   # codes [l, T'] int64, the first l <= L levels -> log-mel [n_mels, T]
    programs["decode"].module()(codes)       # codes [l, T'] -> wave [T x hop_length] (Griffin-Lim)
    describe(model, name)                    # what the programs need to be used: rate, hop, levels, ...

T = T' x downsample frames, T' = ceil(max(S, n_fft) / (hop_length x downsample)) positions: the same padding,
log-mel, codes and Griffin-Lim as sda.model.codec (encode_mono, decode_mel, decode). Every length is one program
(the length is a symbolic dimension, from 1 sample and 1 position up), and so is every l from 1 to L.

Why torch.export and not TorchScript (measured on torch 2.14, torchaudio 2.11; bench/RESULTS.md):
- TorchScript is deprecated: torch.jit.script and torch.jit.load each warn "deprecated, switch to torch.export".
- torch.export traces sda's own Python, so the programs are the model's own code: codec.padded, LogMel
  (torchaudio's MelSpectrogram), ConvVQVAE._encode and _decode, MelInverter (torchaudio's GriffinLim). A change
  to any of them (Griffin-Lim's iterations, say) reaches the next export with nothing copied here. TorchScript
  compiles source instead and cannot compile LogMel (a module-level float) nor ConvVQVAE (sda.kernels), so it
  would need copies of all of them.
- The traced graph holds only aten operators (torch.stft, torch.istft, conv1d, addmm, argmin...): loading needs
  torch and nothing else. torchaudio's transforms export as they are, once MelInverter builds its GriffinLim
  without a fixed length.
What it costs: a program has one method, so an export is a folder of three .pt2 files (sda.format.export), 7.1 MB
for a 3.8 MB model (the decoder's weights are in two of them); exporting takes about 15 s on 2 cores, and loading
0.5 to 5 s a program (decode's Griffin-Lim iterations are unrolled in its graph), against tens of ms for TorchScript;
torch.export files may not load in a much newer torch ("under active development"): export again after upgrading.
The programs run at sda's own speed (the same operators).

The nearest-code search is written out here (sda.kernels is not traceable: it dispatches on devices and walks
rows in chunks), as the reference computes it: argmin over ||c||^2 - 2 x.c, one addmm, the lowest index on ties,
so the exported encoder picks the same indices as sda's.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim, ExportedProgram
from torch.fx.experimental import _config as fx_config

from sda.data.audio import LogMel, MelInverter
from sda.model.codec import padded
from sda.model.quantizer import ResidualVQ
from sda.model.vqvae import ConvVQVAE

PROGRAMS = ("encode", "decode_mel", "decode")
MAX_SAMPLES = 1 << 31  # the longest wave the encoder takes: 27 hours at 22050 Hz


class _Part(nn.Module):
    """The pieces of a model that one program needs, registered so that only their tensors go into its file;
    the model itself is held unregistered, and its methods run on those same tensors while being traced."""

    def __init__(self, model: ConvVQVAE, *modules: str):
        super().__init__()
        self._model = (model,)  # a tuple: nn.Module would register the model, and every tensor of it
        for name in modules:  # the normalisation statistics go in as constants, traced from the model
            setattr(self, name, getattr(model, name))

    @property
    def model(self) -> ConvVQVAE:
        return self._model[0]

    def codebooks(self) -> torch.Tensor:
        """[L, K, D] float32, the codes of every level."""
        quantizer = self.model.quantizer
        if not isinstance(quantizer, ResidualVQ):
            raise ValueError(f"only sda's ResidualVQ exports, not {type(quantizer).__name__}")
        return torch.stack([level.embed.detach().float() for level in quantizer.codebooks])


class Encoder(_Part):
    """wave [S] float32 mono at the model's rate -> codes [L, T'] int64, as sda.model.codec.encode_mono."""

    codes: torch.Tensor
    norms: torch.Tensor
    codes_t: torch.Tensor

    def __init__(self, model: ConvVQVAE):
        super().__init__(model, "encoder")
        self.log_mel = _compact(LogMel(model.config.audio))
        codebooks = self.codebooks()
        # The reference's operands (kernels/reference.py), made once: norms [L, K] and transposed codes [L, D, K].
        self.register_buffer("codes", codebooks)
        self.register_buffer("norms", (codebooks * codebooks).sum(dim=2))
        self.register_buffer("codes_t", codebooks.transpose(1, 2).contiguous())

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        mel = self.log_mel(padded(wave, self.model.config)[None])  # [1, n_mels, T]
        residual = self.model._encode(mel)[0].float().T  # [T', D]
        indices = []
        for codes, norms, codes_t in zip(self.codes, self.norms, self.codes_t, strict=True):
            nearest = torch.addmm(norms, residual, codes_t, alpha=-2.0).argmin(dim=1)  # [T']; ties: the lowest
            residual = residual - codes[nearest]
            indices.append(nearest)
        return torch.stack(indices)


class MelDecoder(_Part):
    """codes [l, T'] int64 of the first l <= L levels -> log-mel [n_mels, T' x downsample], as codec.decode_mel."""

    columns: torch.Tensor

    def __init__(self, model: ConvVQVAE):
        super().__init__(model, "decoder")
        codebooks = self.codebooks()
        # Each level's codes and a zero code after them: the levels a grid leaves out are given that code, so one
        # program takes any l (a loop over l levels would fix l) and adds exactly what ResidualVQ.decode adds.
        # Stored [L, D, K + 1] so that the sum comes out as the decoder's [D, T'] with no transpose (a transposed
        # input would make the traced convolution pick its memory layout by whether T' is 1).
        self.register_buffer("columns", F.pad(codebooks, (0, 0, 0, 1)).transpose(1, 2).contiguous())

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        levels, size = self.columns.shape[0], self.columns.shape[2] - 1
        codes = F.pad(codes.long(), (0, 0, 0, levels - codes.shape[0]), value=size)  # [L, T']
        chosen = [table[:, row] for table, row in zip(self.columns, codes, strict=True)]  # L x [D, T']
        latents = sum(chosen[1:], chosen[0])  # in ResidualVQ.decode's order: the same float sums
        return self.model._decode(latents[None])[0]


class WaveDecoder(MelDecoder):
    """codes [l, T'] -> wave [T' x downsample x hop_length] float32 through sda's MelInverter (Griffin-Lim), as
    codec.decode with no cut and no resampling."""

    def __init__(self, model: ConvVQVAE):
        super().__init__(model)
        self.inverter = _compact(MelInverter(model.config.audio))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.inverter(super().forward(codes))


def _compact(module: nn.Module) -> nn.Module:
    """module with every buffer in storage of its own size. torch's periodic Hann window (STFT, Griffin-Lim) is a
    view of n + 1 samples, and torch.export.save warns about every such view that it may not save right."""
    for part in module.modules():
        for name, buffer in part.named_buffers(recurse=False):
            part.register_buffer(name, buffer.clone())
    return module


def export_programs(model: ConvVQVAE) -> dict[str, ExportedProgram]:
    """The three programs of a model with initialised codebooks (PROGRAMS; see the module docstring)."""
    if not model.quantizer.initialized:
        raise ValueError("the model's codebooks are not initialised (saved during warm-up): it has no codes yet")
    # A copy without gradients: the programs' outputs then need no torch.no_grad(), and the caller's model is
    # left as it was.
    model = copy.deepcopy(model).eval().requires_grad_(False)
    config = model.config
    samples = Dim("samples", min=1, max=MAX_SAMPLES)
    positions = Dim("positions", min=1, max=MAX_SAMPLES // (config.audio.hop_length * config.downsample))
    levels = Dim("levels", min=1, max=config.rvq_levels)
    wave = torch.zeros(4 * config.audio.n_fft)  # an example: any length traces the same program
    grid = torch.zeros(config.rvq_levels, 4, dtype=torch.int64)
    # Size-oblivious: a dimension of size 1 (one position) is not special-cased away from the others.
    with torch.no_grad(), fx_config.patch(backed_size_oblivious=True):  # type: ignore[attr-defined]
        return {
            "encode": torch.export.export(Encoder(model), (wave,), dynamic_shapes=({0: samples},)),
            "decode_mel": torch.export.export(MelDecoder(model), (grid,), dynamic_shapes=({0: levels, 1: positions},)),
            "decode": torch.export.export(WaveDecoder(model), (grid,), dynamic_shapes=({0: levels, 1: positions},)),
        }


def describe(model: ConvVQVAE, name: str) -> dict:
    """What a user of the programs needs to know, as JSON-ready values."""
    config, audio = model.config, model.config.audio
    return {
        "model_name": name,
        "sample_rate": audio.sample_rate,
        "hop_length": audio.hop_length,
        "downsample": config.downsample,
        "samples_per_position": audio.hop_length * config.downsample,
        "levels": config.rvq_levels,
        "codebook_size": model.codebook_size,
        "n_mels": audio.n_mels,
        "n_fft": audio.n_fft,
        "torch": torch.__version__,
    }
