"""A training run's settings: :class:`TrainConfig` (batch, steps, the learning-rate schedule,
AdamW's constants, clipping, evaluation, the seed), each checked when it is made."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (defaults: nanoGPT's CPU "baby GPT" run on Shakespeare).

    Parameters
    ----------
    batch_size : int, B windows per step.
    steps : int, optimiser steps in all.
    lr, min_lr : float, peak and final learning rate.
    warmup : int, steps of linear warm-up to ``lr``.
    lr_decay_steps : int or None, the step where the cosine reaches ``min_lr`` (default: steps).
    weight_decay : float, decoupled (AdamW) decay for weight matrices.
    beta1, beta2, eps : AdamW's moments and its ε.
    grad_clip : float, the global gradient norm is scaled down to at most this (0: no clipping).
    eval_interval, eval_iters : evaluate every ``eval_interval`` steps on ``eval_iters`` batches.
    seed : int, the seed of the batch / dropout Generator.
    decay_embeddings : bool, also decay the token and position tables (nanoGPT does; the
        default follows the usual practice of decaying only the matrices that multiply).

    Examples
    --------
    >>> tc = TrainConfig(steps=500, warmup=50)
    >>> tc.batch_size, tc.lr, tc.min_lr
    (12, 0.001, 0.0001)
    >>> TrainConfig(min_lr=0.01)
    Traceback (most recent call last):
        ...
    ValueError: min_lr must be <= lr, got min_lr=0.01 and lr=0.001
    """

    batch_size: int = 12
    steps: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    lr_decay_steps: int | None = None
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    decay_embeddings: bool = False

    def __post_init__(self):
        for name in ("batch_size", "steps", "eval_interval", "eval_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be a non-negative integer, got {self.warmup!r}")
        if self.lr_decay_steps is not None and (not isinstance(self.lr_decay_steps, int)
                                                or self.lr_decay_steps <= self.warmup):
            raise ValueError(f"lr_decay_steps must be an integer > warmup, got {self.lr_decay_steps!r}")
        for name in ("lr", "min_lr", "weight_decay", "eps", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr must be <= lr, got min_lr={self.min_lr} and lr={self.lr}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.decay_embeddings, bool):
            raise ValueError(f"decay_embeddings must be True or False, got {self.decay_embeddings!r}")
