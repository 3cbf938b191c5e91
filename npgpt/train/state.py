"""Where a run is: :class:`TrainState` holds the model, AdamW's moments, the Generator of
batches and dropout masks, the step, the best validation loss and the evaluations so far."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass

import numpy as np

from ..config import GPTConfig  # noqa: F401  (the examples make models)
from ..model import GPT
from .config import TrainConfig
from .optim import AdamW, decayed_parameters


@dataclass
class TrainState:
    """Everything a run needs to continue: the model, AdamW's moments, the Generator that
    draws batches and dropout masks, and where it is.

    ``run_id`` (16 hex digits, drawn by :meth:`new` and kept in every checkpoint) names the
    run: :func:`train` continues a run in its output folder only with a state of that run
    (None: a state made by hand, or read from a checkpoint older than run ids).

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> state = TrainState.new(model, TrainConfig(steps=100))
    >>> state.step, state.best_val, state.history, state.train_config.steps
    (0, None, [], 100)
    """

    model: GPT
    optimizer: AdamW
    rng: np.random.Generator
    train_config: TrainConfig
    step: int = 0
    best_val: float | None = None
    history: list = dataclasses.field(default_factory=list)
    run_id: str | None = None

    @classmethod
    def new(cls, model: GPT, train_config: TrainConfig) -> "TrainState":
        """Step 0 of a run: fresh AdamW moments (decaying :func:`decayed_parameters`) and a
        Generator seeded with ``train_config.seed``.

        Examples
        --------
        >>> cfg = GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1)
        >>> model = GPT(cfg, seed=0)
        >>> state = TrainState.new(model, TrainConfig(weight_decay=0.1))
        >>> state.optimizer.t, state.optimizer.weight_decay, "output_layer.weight" in state.optimizer.decay
        (0, 0.1, True)
        """
        tc = train_config
        optimizer = AdamW(model.params, (tc.beta1, tc.beta2), tc.eps, tc.weight_decay,
                          decayed_parameters(model.params, tc.decay_embeddings))
        return cls(model, optimizer, np.random.default_rng(tc.seed), tc, run_id=secrets.token_hex(8))
