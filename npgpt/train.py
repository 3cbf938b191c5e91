"""Training: AdamW, the learning-rate schedule, gradient clipping, batches, evaluation and
checkpoints that resume bit-identically.

Shapes: a corpus is a 1-D int array of token ids; a batch is x, y (B, T) with y the
sequence x shifted by one token (y[b, t] = corpus[i_b + t + 1]).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .config import GPTConfig
from .model import GPT
from .nn.crossentropy import cross_entropy_forward

CHECKPOINT_FORMAT = "npgpt-train-1"


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


# ----------------------------------------------------------------------------- schedule
def learning_rate(step: int, cfg: TrainConfig) -> float:
    """The learning rate at ``step`` (0-based): linear warm-up, then cosine decay.

    lr(s) = lr · (s + 1) / (warmup + 1)                          for s < warmup
    lr(s) = min_lr + ½ (1 + cos(π r)) (lr - min_lr),  r = (s - warmup) / (decay - warmup)
    lr(s) = min_lr                                               for s ≥ decay
    (nanoGPT's schedule.)
    """
    decay = cfg.lr_decay_steps or cfg.steps
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / (cfg.warmup + 1)
    if step >= decay:
        return cfg.min_lr
    ratio = (step - cfg.warmup) / (decay - cfg.warmup)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Scale every gradient in place so that the global L2 norm is at most ``max_norm``.

    norm = √(Σ_p ‖g_p‖²); if norm > max_norm, g ← g · max_norm / (norm + 1e-6)
    (``torch.nn.utils.clip_grad_norm_``). Returns the norm before clipping.
    """
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if max_norm > 0:
        coef = max_norm / (norm + 1e-6)
        if coef < 1.0:
            for g in grads.values():
                g *= g.dtype.type(coef)
    return norm


# ----------------------------------------------------------------------------- optimiser
def decayed_parameters(names, decay_embeddings: bool = False) -> list:
    """The parameters AdamW decays: 2-D weight matrices (not biases or LayerNorm), and the
    embedding tables only when ``decay_embeddings``."""
    out = []
    for name in names:
        if name.endswith(("bias", "ln1.weight", "ln2.weight")) or name.startswith("ln_final"):
            continue
        if name in ("token_embedding.weight", "position_encoding.weight") and not decay_embeddings:
            continue
        out.append(name)
    return out


class AdamW:
    """AdamW exactly as ``torch.optim.AdamW`` computes it (decoupled weight decay).

    For each parameter p with gradient g at step t (1-based):
        p ← p · (1 - lr · wd)                        (only for decayed parameters)
        m ← β₁ m + (1 - β₁) g;   v ← β₂ v + (1 - β₂) g²
        p ← p - (lr / (1 - β₁ᵗ)) · m / (√v / √(1 - β₂ᵗ) + ε)

    Parameters
    ----------
    params : dict name -> ndarray, updated in place by :meth:`step`.
    betas, eps, weight_decay : as in torch.
    decay : iterable of names to decay (see :func:`decayed_parameters`).
    """

    def __init__(self, params: dict, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, decay=()):
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.decay = set(decay)
        unknown = self.decay - set(params)
        if unknown:
            raise ValueError(f"decay names parameters that do not exist: {sorted(unknown)}")
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params: dict, grads: dict, lr: float) -> None:
        """One update of every parameter in ``params`` (in place) from ``grads``."""
        self.t += 1
        b1, b2 = self.betas
        bias1 = 1.0 - b1 ** self.t
        bias2_sqrt = math.sqrt(1.0 - b2 ** self.t)
        for name, p in params.items():
            g = grads[name]
            dt = p.dtype.type
            if name in self.decay and self.weight_decay:
                p *= dt(1.0 - lr * self.weight_decay)
            m, v = self.m[name], self.v[name]
            m *= dt(b1)
            m += dt(1.0 - b1) * g
            v *= dt(b2)
            v += dt(1.0 - b2) * np.square(g)
            denom = np.sqrt(v)
            denom *= dt(1.0 / bias2_sqrt)
            denom += dt(self.eps)
            p -= dt(lr / bias1) * m / denom

    def state_dict(self) -> dict:
        return {"t": self.t, "m": self.m, "v": self.v}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])
        self.m = {k: np.array(v) for k, v in state["m"].items()}
        self.v = {k: np.array(v) for k, v in state["v"].items()}


# ----------------------------------------------------------------------------- data
def split_corpus(ids, val_fraction: float = 0.1):
    """The first (1 - val_fraction) of the corpus for training, the rest for validation."""
    ids = np.asarray(ids)
    n = int(len(ids) * (1.0 - val_fraction))
    return ids[:n], ids[n:]


def get_batch(data, batch_size: int, context: int, rng: np.random.Generator):
    """Random contiguous windows: x (B, T) = data[i : i+T], y (B, T) = data[i+1 : i+T+1]."""
    if len(data) < context + 1:
        raise ValueError(f"the data has {len(data)} tokens; a window of context {context} "
                         f"needs at least {context + 1}")
    starts = rng.integers(0, len(data) - context, size=batch_size)        # (B,)
    index = starts[:, None] + np.arange(context)                          # (B, T)
    return data[index].astype(np.int64), data[index + 1].astype(np.int64)


def estimate_loss(model: GPT, data, batch_size: int, context: int, iters: int, seed) -> float:
    """Mean loss over ``iters`` random batches drawn from a Generator seeded with ``seed``
    (dropout-free: evaluation mode)."""
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(iters):
        x, y = get_batch(data, batch_size, context, rng)
        logits = model(x)
        losses.append(cross_entropy_forward(logits, y)[0])
    return float(np.mean(losses))


def split_loss(model: GPT, data, batch_size: int = 32) -> float:
    """The mean loss over the whole of ``data``, cut into consecutive windows of
    ``context_length`` (each token predicted once, from up to a window of context) — a
    deterministic figure, unlike the random-batch estimate of :func:`estimate_loss`."""
    T = model.config.context_length
    n = (len(data) - 1) // T                                              # whole windows
    if n == 0:
        raise ValueError(f"the data has {len(data)} tokens; a window needs {T + 1}")
    starts = np.arange(n) * T
    total = 0.0
    for i in range(0, n, batch_size):
        index = starts[i:i + batch_size, None] + np.arange(T)             # (b, T)
        x, y = data[index].astype(np.int64), data[index + 1].astype(np.int64)
        total += cross_entropy_forward(model(x), y)[0] * len(index)
    return total / n


# ----------------------------------------------------------------------------- checkpoints
def _atomic_savez(path: str, arrays: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str, state: "TrainState") -> None:
    """Write the whole training state (model, optimiser moments, RNG, step, history) to one
    .npz, atomically (a temporary file renamed over the old one). No pickles: metadata is JSON."""
    model = state.model
    meta = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "train_config": dataclasses.asdict(state.train_config),
        "step": state.step,
        "best_val": state.best_val,
        "history": state.history,
        "rng": state.rng.bit_generator.state,
        "adam_t": state.optimizer.t,
        "decay": sorted(state.optimizer.decay),
        "tokenizer": None if model.tokenizer is None else model.tokenizer.to_dict(),
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    for name, value in model.params.items():
        arrays["param/" + name] = value
        arrays["m/" + name] = state.optimizer.m[name]
        arrays["v/" + name] = state.optimizer.v[name]
    _atomic_savez(path, arrays)


def load_checkpoint(path: str) -> "TrainState":
    """Read a checkpoint written by :func:`save_checkpoint` (never unpickles anything)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            if meta.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"format {meta.get('format')!r} is not {CHECKPOINT_FORMAT!r}")
            arrays = {k: f[k] for k in f.files if k != "meta"}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:   # JSONDecodeError is a ValueError
        raise ValueError(f"cannot read training checkpoint {path}: {err}") from err
    config = GPTConfig.from_dict(meta["config"])
    dtype = arrays["param/token_embedding.weight"].dtype
    model = GPT(config, dtype=dtype)
    model.load_state_dict({k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")})
    if meta["tokenizer"] is not None:
        from .tokenizers import tokenizer_from_dict
        model.tokenizer = tokenizer_from_dict(meta["tokenizer"])
    train_config = TrainConfig(**meta["train_config"])
    optimizer = AdamW(model.params, (train_config.beta1, train_config.beta2), train_config.eps,
                      train_config.weight_decay, meta["decay"])
    optimizer.load_state_dict({"t": meta["adam_t"],
                               "m": {k[2:]: v for k, v in arrays.items() if k.startswith("m/")},
                               "v": {k[2:]: v for k, v in arrays.items() if k.startswith("v/")}})
    rng = np.random.default_rng()
    rng.bit_generator.state = meta["rng"]
    return TrainState(model, optimizer, rng, train_config, meta["step"], meta["best_val"],
                      meta["history"])


# ----------------------------------------------------------------------------- the loop
@dataclass
class TrainState:
    """Everything a run needs to continue: the model, AdamW's moments, the Generator that
    draws batches and dropout masks, and where it is."""

    model: GPT
    optimizer: AdamW
    rng: np.random.Generator
    train_config: TrainConfig
    step: int = 0
    best_val: float | None = None
    history: list = dataclasses.field(default_factory=list)

    @classmethod
    def new(cls, model: GPT, train_config: TrainConfig) -> "TrainState":
        tc = train_config
        optimizer = AdamW(model.params, (tc.beta1, tc.beta2), tc.eps, tc.weight_decay,
                          decayed_parameters(model.params, tc.decay_embeddings))
        return cls(model, optimizer, np.random.default_rng(tc.seed), tc)


def train_step(state: TrainState, x, y) -> dict:
    """One optimiser step on the batch (x, y): forward, backward, clip, AdamW."""
    tc = state.train_config
    lr = learning_rate(state.step, tc)
    loss, grads = state.model.loss_and_grads(x, y, rng=state.rng)
    norm = clip_grad_norm(grads, tc.grad_clip)
    state.optimizer.step(state.model.params, grads, lr)
    state.step += 1
    return {"step": state.step, "loss": loss, "lr": lr, "grad_norm": norm}


def train(state: TrainState, train_data, val_data, out_dir: str | None = None,
          on_step: Callable[[dict], None] | None = None,
          on_eval: Callable[[dict], None] | None = None,
          stop_at: int | None = None) -> TrainState:
    """Run the loop from ``state.step`` to ``train_config.steps`` (or ``stop_at``).

    Every ``eval_interval`` steps (and at the end) the loss is estimated on both splits; a
    better validation loss writes ``out_dir/model.safetensors`` (loadable with
    ``npgpt.load``), and ``out_dir/ckpt.npz`` always holds the latest full state. A
    KeyboardInterrupt writes the checkpoint before it propagates.
    """
    tc = state.train_config
    context = state.model.config.context_length
    end = tc.steps if stop_at is None else min(stop_at, tc.steps)
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    tokens_per_step = tc.batch_size * context
    try:
        while state.step < end:
            start = time.perf_counter()
            x, y = get_batch(train_data, tc.batch_size, context, state.rng)
            info = train_step(state, x, y)
            info["seconds"] = time.perf_counter() - start
            info["tokens_per_second"] = tokens_per_step / info["seconds"]
            if on_step is not None:
                on_step(info)
            if state.step % tc.eval_interval == 0 or state.step == tc.steps:
                evaluate(state, train_data, val_data, out_dir, on_eval)
    except KeyboardInterrupt:
        if out_dir is not None:
            save_checkpoint(os.path.join(out_dir, "ckpt.npz"), state)
        raise
    if out_dir is not None:
        save_checkpoint(os.path.join(out_dir, "ckpt.npz"), state)
    return state


def evaluate(state: TrainState, train_data, val_data, out_dir=None, on_eval=None) -> dict:
    """Estimate train and validation loss; keep the best model and write checkpoints."""
    tc = state.train_config
    context = state.model.config.context_length
    seed = [tc.seed, state.step]        # its own stream: evaluation never shifts training's
    record = {"step": state.step,
              "train_loss": estimate_loss(state.model, train_data, tc.batch_size, context, tc.eval_iters, seed),
              "val_loss": estimate_loss(state.model, val_data, tc.batch_size, context, tc.eval_iters, seed)}
    improved = state.best_val is None or record["val_loss"] < state.best_val
    if improved:
        state.best_val = record["val_loss"]
    record["best"] = improved
    state.history.append(record)
    if out_dir is not None:
        if improved:
            state.model.save(os.path.join(out_dir, "model.safetensors"))
        save_checkpoint(os.path.join(out_dir, "ckpt.npz"), state)
    if on_eval is not None:
        on_eval(record)
    return record
