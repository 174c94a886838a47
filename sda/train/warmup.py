"""The early-training schedule: one rule, applied by the engine, decided here.

For the first W = config.warmup_steps optimizer steps (auto: 10% of the run, at most 100), the model
trains as a plain autoencoder: latents pass the quantiser unquantised, there is no commitment term,
and the codebooks stay uninitialised (there is nothing to count, so there is no health to judge).
Before step W + 1, k-means initialises every level from the warmed-up encoder's outputs, and each
code's usage count starts at the scale of one training step (its k-means cluster size x vectors per
step / vectors in the k-means sample); from then on the quantiser, its commitment loss and its
health are live, as in a run without warm-up.

Why (bench/health_dynamics.py, figures in bench/RESULTS.md): k-means on an untrained encoder places
codes that the encoder leaves behind within tens of steps of fast early learning, and every level of
a healthy run fell under 30% early. The encoder still moves after a short warm-up, and a code whose
count is its k-means cluster size (tens of vectors, against about one per step) stays "alive" for
tens of steps after losing its data, so on short clicks (bucklespring, K = 256) the autoencoder
warm-up alone still fell to 18-25% after it; with counts at one step's scale dead-code replacement
reacts within a few steps, and no collection or seed measured warned. Measured and left off: a
linear learning-rate ramp (on its own it still dipped under 30%; with the warm-up, the encoder met
the full rate just as the codebooks were set, and the dip after k-means was deeper). Its known cost:
the third level ends 1.5 to 8.1 points lower than with W = 0 (last 150 steps, six seeds); six
candidate causes are measured and ruled out in bench/RESULTS.md; the cause is not found. W = 0 is sda's
schedule before this rule (k-means at step 0, k-means-sized counts): files written then load with it
and resume as they began.

Every decision is a pure function of the step and the config, so a resumed run, and every process of
a distributed one, takes the same path.
"""

from dataclasses import dataclass

from sda.config import VQVAEConfig


@dataclass(frozen=True)
class Rule:
    """The parts of the schedule, each switchable so that the benchmark can measure it alone."""

    autoencoder: bool  # quantizer off during warm-up, k-means at its end (else k-means at step 0)
    lr_ramp: bool  # linear learning-rate warm-up
    step_scale_counts: bool  # k-means usage counts at one training step's scale


RULE = Rule(autoencoder=True, lr_ramp=False, step_scale_counts=True)  # what sda trains with (see above)


def quantizing(config: VQVAEConfig, step: int, rule: Rule | None = None) -> bool:
    """Whether step (1-based) runs through the quantizer."""
    rule = rule or RULE
    if not rule.autoencoder:
        return True
    if config.warmup_steps is None:
        raise ValueError("the config's warm-up is not decided yet: VQVAEConfig.with_warmup decides it")
    return step > config.warmup_steps


def kmeans_due(config: VQVAEConfig, step: int, rule: Rule | None = None) -> bool:
    """Whether the codebooks should be initialised before step (1-based), given they are not yet."""
    return quantizing(config, step, rule)


def learning_rate(config: VQVAEConfig, step: int, rule: Rule | None = None) -> float:
    """The learning rate of step (1-based)."""
    rule = rule or RULE
    warmup = config.warmup_steps
    if not rule.lr_ramp or not warmup or step > warmup:
        return config.learning_rate
    return config.learning_rate * step / warmup


def kmeans_count_scale(config: VQVAEConfig, sample_vectors: int, step_vectors: int, rule: Rule | None = None) -> float:
    """What k-means' counts over sample_vectors are multiplied by to give usage per training step."""
    rule = rule or RULE
    if not config.warmup_steps or not rule.step_scale_counts or sample_vectors == 0:
        return 1.0  # the schedule before sda.train.warmup
    return step_vectors / sample_vectors
