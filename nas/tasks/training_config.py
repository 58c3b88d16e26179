"""Optimisation settings every task shares (``task.training`` in a config file).

Each task subclasses :class:`TrainingConfig` to set its own defaults (and add
its own fields), so both validate the same way. Reading it never imports
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Optional

from nas.config import ConfigError, require


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """SGD with momentum, linear warm-up, then cosine or step decay."""

    epochs: int = 8
    batch_size: int = 16
    learning_rate: float = 0.04
    momentum: float = 0.9
    warmup_steps: int = 100
    schedule: Literal["cosine", "step"] = "cosine"
    step_boundaries: tuple[float, ...] = (0.67, 0.89)
    step_factor: float = 0.1
    weight_decay: float = 4e-5
    # Bounds the global norm of the whole batch's gradient (under a strategy, of the replicas' sum).
    gradient_clip_norm: Optional[float] = 10.0
    jit_compile: bool = False
    # auto: mixed_bfloat16 on CPUs with native bfloat16 (avx512_bf16, AMX), mixed_float16 on GPUs with
    # tensor cores, else float32. Losses, batch-norm statistics and box decoding stay in float32.
    # A study holds one: it refuses a worker where auto means another precision (nas.search.precision).
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = "auto"
    # "mirrored": one replica per visible GPU (tf.distribute.MirroredStrategy); on a CPU-only machine it
    # runs one CPU replica, so the same file works everywhere.
    strategy: Literal["default", "mirrored"] = "default"
    seed: int = 0
    report_every_steps: Optional[int] = None

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            require(getattr(self, name) >= 1, name, "positive", getattr(self, name))
        require(self.learning_rate > 0 and math.isfinite(self.learning_rate), "learning_rate", "a positive number",
                self.learning_rate)
        require(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        require(self.warmup_steps >= 0, "warmup_steps", "0 or more", self.warmup_steps)
        require(self.weight_decay >= 0 and math.isfinite(self.weight_decay), "weight_decay", "0 or more",
                self.weight_decay)
        clip = self.gradient_clip_norm
        require(clip is None or (clip > 0 and math.isfinite(clip)), "gradient_clip_norm", "positive (or null for none)",
                clip)
        if any(not 0 < b < 1 for b in self.step_boundaries) or list(self.step_boundaries) != sorted(self.step_boundaries):
            raise ConfigError(f"step_boundaries: need increasing fractions of training in (0, 1), "
                              f"got {list(self.step_boundaries)}")
        require(0 < self.step_factor <= 1, "step_factor", "in (0, 1]", self.step_factor)
        require(self.report_every_steps is None or self.report_every_steps >= 1, "report_every_steps",
                "positive (or null for each epoch)", self.report_every_steps)
