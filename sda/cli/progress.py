"""The CLI's view of training events: tqdm bars on a terminal, plain lines when output is a file or pipe.

On a terminal: one progress bar for the run (epoch, step, loss, ETA) and under it one line per RVQ
level (utilization, perplexity, bits a code and bit/s, dead codes; "warming up" before the quantizer
starts) and a line of the total bitrate, rewritten in place at each health update and kept on screen
between them, whatever the epoch length; epoch lines, warnings and recoveries scroll above. Otherwise
every health update and epoch is a plain line, so logs stay readable.
"""

import sys

from tqdm import tqdm

from sda import report
from sda.data.dataset import FILES, DecodeProgress
from sda.text import plural, printable_lines
from sda.train.events import Alert, Checkpoint, Done, Epoch, Error, Health, Preview, Recovered, Started, Step

YELLOW, RED, RESET = "\033[33m", "\033[31m", "\033[0m"
NO_BITRATE_YET = "bitrate: once the codes are counted"  # the total row before the quantizer has counted any


class Progress:
    def __init__(self, interactive: bool, out=None):
        self.interactive = interactive
        self.out = out or sys.stdout
        self.bar = None
        self.level_lines = []
        self.levels = self.epochs = self.warmup = 0
        self.latest: list[str] = []  # the level rows of the latest health update, shown until the next
        self.reading_bar = None  # while the audio is read, before the run's events (sda.data.dataset.OnProgress)

    def reading(self, p: DecodeProgress) -> None:
        """How far reading the audio is (after each file): a bar on a terminal, then one line for the folder's pass."""
        if self.interactive:
            if self.reading_bar is None:
                self.reading_bar = tqdm(total=p.total, file=self.out, leave=False, dynamic_ncols=True,
                                        bar_format="{desc} [{elapsed}<{remaining}]")
            self.reading_bar.n = p.done
            self.reading_bar.set_description_str(report.decoding_text(p))  # refreshes, at most tqdm's rate
        if p.done == p.total:
            self._close_reading()
            if p.stage == FILES:
                self._print(report.decoded_text(p))

    def _close_reading(self) -> None:
        if self.reading_bar is not None:
            self.reading_bar.close()
            self.reading_bar = None

    def show(self, event) -> None:
        """Render one event."""
        if isinstance(event, Started):
            self._started(event)
        elif isinstance(event, Step):
            self._step(event)
        elif isinstance(event, Health):
            self._health(event)
        elif isinstance(event, Alert):
            advice = f" {report.advice(event.warning, report.CLI, self.levels)}" if event.warning else ""
            self._print(f"WARNING: {event.message}." + advice if advice else f"WARNING: {event.message}", YELLOW)
        elif isinstance(event, Recovered):
            w = event.warning
            self._print(f"level {w.level + 1} {w.outcome()}: the warning of step {w.step} is resolved")
        elif isinstance(event, Epoch):
            t, v = event.train, event.validation
            self._print(f"epoch {event.epoch}/{event.epochs}: train loss {t['loss']:.4f} "
                        f"(recon {t['reconstruction']:.4f}, commit {t['commitment']:.4f}), "
                        f"validation loss {v['loss']:.4f} (recon {v['reconstruction']:.4f})")
        elif isinstance(event, Preview):
            self._print(f"  previews: {event.clips[0][1].parent} (epoch {event.epoch})")
        elif isinstance(event, Checkpoint) and event.reason == "interval":
            self._print(f"  checkpoint: {event.path}")
        elif isinstance(event, Done):
            self._close_bars()
            self._print(report.summary_text(event.summary, report.CLI))
        elif isinstance(event, Error):
            self._close_bars()
            print(self._color(RED, f"sda: error: {printable_lines(event.message)}"), file=sys.stderr)

    def _started(self, event: Started) -> None:
        c = event.config
        self.levels, self.epochs, self.warmup = c.rvq_levels, c.epochs, c.warmup_steps
        self.latest = [*(report.warming_up_line(i, self.warmup) if self.warmup else
                         f"level {i + 1}  (health after the first steps)" for i in range(self.levels)),
                       NO_BITRATE_YET]
        self._print(event.preflight.format())
        self._print(f"model: {c.rvq_levels} RVQ levels x {c.codebook_size} codes x dim {c.codebook_dim}, "
                    f"commitment weight {c.commitment_weight}; {plural(c.epochs, 'epoch')} of "
                    f"{plural(event.steps_per_epoch, 'step')} "
                    f"({report.batch(c.batch_size, event.processes)}); device {event.device} ({event.precision}), "
                    f"kernels {event.backend}")
        if c.warmup_steps:
            self._print(f"warm-up: {plural(c.warmup_steps, 'step')} as a plain autoencoder, then k-means starts the "
                        "codebooks; their health is judged from then on")
        if event.resumed_at:
            self._print(f"resuming {event.checkpoint_path} at epoch {event.resumed_at[0]}, step "
                        f"{event.resumed_at[1]}, with the settings stored in it")
        self._print(f"model file: {event.model_path}")
        if event.metrics_path is not None:
            self._print(f"metrics log: {event.metrics_path} (a JSON record per health window and epoch)")

    def _health(self, event: Health) -> None:
        if event.warming_up and all(h.assignments == 0 for h in event.levels):
            lines = [report.warming_up_line(h.level, self.warmup) for h in event.levels]
        else:
            lines = [report.level_line(h, event.judged, event.bitrate) for h in event.levels]
        lines.append(report.bitrate_line(event.bitrate, event.levels) or NO_BITRATE_YET)  # the total, under them
        if self.interactive:
            self.latest = lines
            for line, bar in zip(lines, self.level_lines, strict=False):
                bar.set_description_str("  " + line)
        else:
            self._print(f"  step {event.step} health over {plural(event.window_steps, 'step')}:")
            for line in lines:
                self._print("    " + line)

    def _step(self, s: Step) -> None:
        if not self.interactive:
            return
        if self.bar is None:  # one bar for the run, its level rows under it until the end
            # tqdm's own time left counts steps only; the ETA in the postfix (the engine's) also counts
            # validation, previews and checkpoints, so it is the one shown.
            self.bar = tqdm(total=s.total_steps, file=self.out, leave=True, position=0, initial=s.step - 1,
                            dynamic_ncols=True, unit="step",
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}, "
                                       "{rate_fmt}{postfix}]")
            self.level_lines = [tqdm(total=0, position=i + 1, bar_format="{desc}", file=self.out, leave=False,
                                     desc="  " + line) for i, line in enumerate(self.latest)]
        self.bar.set_description_str(f"epoch {s.epoch}/{self.epochs}", refresh=False)
        self.bar.update(1)
        self.bar.set_postfix_str(f"loss {s.loss:.4f}, {report.eta_text(s.eta_s)}", refresh=False)

    def _close_bars(self) -> None:
        for bar in self.level_lines:
            bar.close()
        if self.bar is not None:
            self.bar.close()
        self.bar, self.level_lines = None, []

    def close(self) -> None:
        self._close_reading()
        self._close_bars()

    def _print(self, text: str, color: str | None = None) -> None:
        """One message above the bars. Names and messages from files and folders may hold control characters
        (a terminal would run them as escape sequences): every line is made printable here, then coloured."""
        text = printable_lines(text)
        if color is not None:
            text = self._color(color, text)
        if self.bar is not None:
            tqdm.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def _color(self, color: str, text: str) -> str:
        return f"{color}{text}{RESET}" if self.interactive else text
