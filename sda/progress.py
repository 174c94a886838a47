"""The CLI's view of training events: tqdm bars on a terminal, plain lines when output is a file or pipe.

On a terminal: one progress bar per epoch (step, loss, ETA) and under it one line per RVQ level
(utilization, perplexity, dead codes), rewritten in place at each health update. Otherwise every
health update and epoch is a plain line, so logs stay readable.
"""

import sys

from tqdm import tqdm

from sda import report
from sda.events import Alert, Checkpoint, Done, Epoch, Error, Health, Preview, Started, Step

YELLOW, RED, RESET = "\033[33m", "\033[31m", "\033[0m"


class Progress:
    def __init__(self, interactive: bool, out=None):
        self.interactive = interactive
        self.out = out or sys.stdout
        self.bar = None
        self.level_lines = []
        self.levels = 0

    def show(self, event) -> None:
        """Render one event."""
        if isinstance(event, Started):
            self.levels = event.config.rvq_levels
            self._print(event.preflight.format())
            c = event.config
            self._print(f"model: {c.rvq_levels} RVQ levels x {c.codebook_size} codes x dim {c.codebook_dim}, "
                        f"commitment weight {c.commitment_weight}; {c.epochs} epochs of {event.steps_per_epoch} steps "
                        f"({report.batch(c.batch_size, event.processes)}); device {event.device} ({event.precision}), "
                        f"kernels {event.backend}")
            if event.resumed_at:
                self._print(f"resuming {event.checkpoint_path} at epoch {event.resumed_at[0]}, step "
                            f"{event.resumed_at[1]}, with the settings stored in it")
            self._print(f"model file: {event.model_path}")
        elif isinstance(event, Step):
            self._step(event)
        elif isinstance(event, Health):
            lines = [report.level_line(h) for h in event.levels]
            if self.interactive:
                for line, bar in zip(lines, self.level_lines, strict=False):
                    bar.set_description_str("  " + line)
            else:
                self._print(f"  step {event.step} health over {event.window_steps} steps:")
                for line in lines:
                    self._print("    " + line)
        elif isinstance(event, Alert):
            self._print(self._color(YELLOW, f"WARNING: {event.message}"))
        elif isinstance(event, Epoch):
            self._close_bars()
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
            self._print(report.summary_text(event.summary))
        elif isinstance(event, Error):
            self._close_bars()
            print(self._color(RED, f"sda: error: {event.message}"), file=sys.stderr)

    def _step(self, s: Step) -> None:
        if not self.interactive:
            return
        if self.bar is None:
            self.bar = tqdm(total=s.steps_per_epoch, desc=f"epoch {s.epoch}", file=self.out, leave=True, position=0,
                            initial=s.epoch_step - 1, dynamic_ncols=True)
            self.level_lines = [tqdm(total=0, position=i + 1, bar_format="{desc}", file=self.out, leave=False)
                                for i in range(self.levels)]
        self.bar.update(1)
        self.bar.set_postfix_str(f"loss {s.loss:.4f}, ETA {report.duration(s.eta_s)}", refresh=False)

    def _close_bars(self) -> None:
        for bar in self.level_lines:
            bar.close()
        if self.bar is not None:
            self.bar.close()
        self.bar, self.level_lines = None, []

    def close(self) -> None:
        self._close_bars()

    def _print(self, text: str) -> None:
        if self.bar is not None:
            tqdm.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def _color(self, color: str, text: str) -> str:
        return f"{color}{text}{RESET}" if self.interactive else text
