"""What `sda export` costs and what its programs run at, against sda itself (bench/RESULTS.md).

    python bench/export_cost.py --model models/ox.sda --audio take.ogg [--seconds 10] [--rounds 5]

Exports the model into a temporary folder (sda.format.export.write_export, timed), reports each file's size and
load time (torch.export.load + .module()), then times encode, decode_mel and decode of the first --seconds of the
file (mono, at the model's rate) through sda.model.codec and through the loaded programs, in turn: the median of
--rounds (decode: half as many) after one untimed call each. Checks on the way that the codes are identical and
the log-mels within 1e-5.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sda.data.audio import read_audio
from sda.format.export import write_export
from sda.format.modelfile import load_model
from sda.model import codec
from sda.model.export import PROGRAMS


def compare(ours, theirs, rounds: int) -> tuple[float, float, object, object]:
    """(median seconds of ours, of theirs, their last results): one untimed call each, then rounds of both in
    turn, so that a load that comes and goes on a shared machine weighs on both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    results = [ours(), theirs()]
    for _ in range(rounds):
        for i, fn in enumerate((ours, theirs)):
            start = time.perf_counter()
            results[i] = fn()
            times[i].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1]), results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    model, metadata = load_model(args.model)
    wave, rate = read_audio(args.audio)
    mono = codec.prepare(wave, rate, model.config)[: int(args.seconds * model.config.audio.sample_rate)]
    seconds = len(mono) / model.config.audio.sample_rate
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.model.name} "
          f"({args.model.stat().st_size / 1e6:.1f} MB); {seconds:.2f} s of {args.audio.name}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model.export"
        start = time.perf_counter()
        files = write_export(folder, model, metadata.get("model_name") or args.model.stem)
        print(f"export: {time.perf_counter() - start:.1f} s, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
        programs = {}
        for key in PROGRAMS:
            start = time.perf_counter()
            programs[key] = torch.export.load(folder / f"{key}.pt2").module()
            print(f"  {key}.pt2: {(folder / f'{key}.pt2').stat().st_size / 1e6:.2f} MB, "
                  f"loaded in {time.perf_counter() - start:.2f} s")

    sda_encode, out_encode, codes, exported_codes = compare(
        lambda: codec.encode_mono(model, mono), lambda: programs["encode"](mono), args.rounds)
    assert torch.equal(codes, exported_codes), "the exported encoder gave other codes"
    sda_mel, out_mel, mel, exported_mel = compare(
        lambda: codec.decode_mel(model, codes), lambda: programs["decode_mel"](codes), args.rounds)
    assert (mel - exported_mel).abs().max() <= 1e-5, "the exported decoder gave another log-mel"
    sda_wave, out_wave, _, _ = compare(
        lambda: codec.decode(model, codes), lambda: programs["decode"](codes), max(1, args.rounds // 2))
    rows = [("encode", sda_encode, out_encode), ("decode_mel", sda_mel, out_mel), ("decode", sda_wave, out_wave)]
    print(f"codes {tuple(codes.shape)} identical; log-mel within 1e-5. Median of {args.rounds} (seconds of audio "
          "per second in brackets):")
    print("| | sda | export | export / sda |\n|---|---|---|---|")
    for name, ours, theirs in rows:
        print(f"| {name} | {ours * 1e3:.0f} ms ({seconds / ours:.0f}x) | {theirs * 1e3:.0f} ms "
              f"({seconds / theirs:.0f}x) | {theirs / ours:.2f}x |")


if __name__ == "__main__":
    main()
