"""Training: AdamW, the learning-rate schedule, gradient clipping, batches, evaluation and
checkpoints that resume bit-identically.

Shapes: a corpus is a 1-D int array of token ids; a batch is x, y (B, T) with y the
sequence x shifted by one token (y[b, t] = corpus[i_b + t + 1]).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
import secrets
import signal
import time
import zipfile
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import threads
from ._threads import each, together
from .config import GPTConfig
from .io.files import process_alive
from .model import GPT, block_parameter_shapes, parameter_shapes
from .nn.crossentropy import cross_entropy_forward

try:
    import fcntl
except ImportError:                     # Windows: the lock falls back to a file holding the pid
    fcntl = None

CHECKPOINT_FORMAT = "npgpt-train-1"
LOCK_NAME = ".lock"
#: The files a run writes into its output folder; a folder holding either holds a run.
RUN_FILES = ("ckpt.npz", "model.safetensors")


class TrainingError(ValueError):
    """A training run cannot go on: one line that says why (the command line prints it and
    exits with 2). Raised when the loss diverges, when another run holds the output folder,
    and when a state that is not finite would be saved.

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> state = TrainState.new(model, TrainConfig(lr=1e10, min_lr=0.0, warmup=0))
    >>> x, y = get_batch(np.array([0, 1, 2, 3] * 10), 4, 8, state.rng)
    >>> with np.errstate(all="ignore"):          # doctest: +ELLIPSIS
    ...     for _ in range(10):
    ...         _ = train_step(state, x, y)
    Traceback (most recent call last):
        ...
    npgpt.train.TrainingError: training diverged at step 2: the loss is nan ... (--lr); ...
    """


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a KeyboardInterrupt) stopped :func:`train`; says what it left behind.

    Attributes
    ----------
    step : int or None
        The step of the consistent state that ``state`` holds and that was saved; None when
        a KeyboardInterrupt came in the middle of an AdamW update (then nothing is saved and
        the files of the last save are kept).
    saved : tuple of str
        The files written on the way out (none without ``out_dir``).

    Examples
    --------
    >>> err = TrainingInterrupted(10, ("out/ckpt.npz",))
    >>> isinstance(err, KeyboardInterrupt), err.step, str(err)
    (True, 10, 'training interrupted at step 10; saved out/ckpt.npz')
    """

    def __init__(self, step: int | None, saved=()):
        self.step = step
        self.saved = tuple(saved)
        if step is None:
            text = "training interrupted in the middle of an AdamW update: that state was not saved"
        else:
            text = f"training interrupted at step {step}" + ("; saved " + ", ".join(self.saved)
                                                              if self.saved else "")
        super().__init__(text)


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


# ----------------------------------------------------------------------------- schedule
def learning_rate(step: int, cfg: TrainConfig) -> float:
    """The learning rate at ``step`` (0-based): linear warm-up, then cosine decay.

    lr(s) = lr · (s + 1) / (warmup + 1)                          for s < warmup
    lr(s) = min_lr + ½ (1 + cos(π r)) (lr - min_lr),  r = (s - warmup) / (decay - warmup)
    lr(s) = min_lr                                               for s ≥ decay
    (nanoGPT's schedule.)

    Examples
    --------
    Warm-up over steps 0..9, the peak at step 10, half-way down at 55, ``min_lr`` from 100:

    >>> cfg = TrainConfig(steps=100, warmup=10, lr=1e-3, min_lr=1e-4)
    >>> [round(learning_rate(s, cfg), 6) for s in (0, 9, 10, 55, 100)]
    [9.1e-05, 0.000909, 0.001, 0.00055, 0.0001]
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

    Examples
    --------
    >>> grads = {"w": np.array([3.0, 4.0]), "b": np.array([0.0])}
    >>> clip_grad_norm(grads, max_norm=1.0)           # √(3² + 4² + 0²)
    5.0
    >>> grads["w"].round(6)                           # scaled by 1 / 5: norm 1
    array([0.6, 0.8])
    """
    norm = math.sqrt(sum(float(v @ v) for v in (g.ravel(order="K") for g in grads.values())))
    if max_norm > 0:
        coef = max_norm / (norm + 1e-6)
        if coef < 1.0:
            for g in grads.values():
                g *= g.dtype.type(coef)
    return norm


# ----------------------------------------------------------------------------- optimiser
def decayed_parameters(names, decay_embeddings: bool = False) -> list:
    """The parameters AdamW decays: 2-D weight matrices (not biases, LayerNorm or RMSNorm
    gains), and the embedding tables only when ``decay_embeddings``.

    Examples
    --------
    >>> names = ["token_embedding.weight", "blocks.0.ln1.weight", "blocks.0.ffn.0.weight",
    ...          "blocks.0.ffn.0.bias", "output_layer.weight"]
    >>> decayed_parameters(names)
    ['blocks.0.ffn.0.weight', 'output_layer.weight']
    >>> decayed_parameters(names, decay_embeddings=True)[0]
    'token_embedding.weight'
    """
    out = []
    for name in names:
        if (name.endswith(("bias", "ln1.weight", "ln2.weight", "norm1.weight", "norm2.weight"))
                or name.startswith(("ln_final", "norm_final"))):
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

    Examples
    --------
    Minimising w² (gradient 2w) from w = (1, -2):

    >>> params = {"w": np.array([1.0, -2.0])}
    >>> opt = AdamW(params, weight_decay=0.0)
    >>> for _ in range(100):
    ...     opt.step(params, {"w": 2 * params["w"]}, lr=0.1)
    >>> opt.t, bool(np.all(np.abs(params["w"]) < 0.01))
    (100, True)
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
        """One update of every parameter in ``params`` (in place) from ``grads``.

        Examples
        --------
        The first step moves every weight by about ``lr`` against its gradient's sign
        (m / √v is ±1 once the bias corrections are applied):

        >>> params = {"w": np.array([1.0, -2.0])}
        >>> opt = AdamW(params, weight_decay=0.0)
        >>> opt.step(params, {"w": np.array([2.0, -4.0])}, lr=0.1)
        >>> params["w"]
        array([ 0.9, -1.9])
        """
        self.t += 1
        b1, b2 = self.betas
        bias1 = 1.0 - b1 ** self.t
        bias2_sqrt = math.sqrt(1.0 - b2 ** self.t)

        def update(name):
            p, g, m, v = params[name], grads[name], self.m[name], self.v[name]
            dt = p.dtype.type
            if name in self.decay and self.weight_decay:
                p *= dt(1.0 - lr * self.weight_decay)
            m *= dt(b1)
            m += dt(1.0 - b1) * g
            v *= dt(b2)
            v += dt(1.0 - b2) * np.square(g)
            denom = np.sqrt(v)
            denom *= dt(1.0 / bias2_sqrt)
            denom += dt(self.eps)
            p -= dt(lr / bias1) * m / denom
        # each parameter's update is independent: the large ones run on all cores at once
        each(update, list(params), [p.size for p in params.values()])

    def state_dict(self) -> dict:
        """The step count and both moments: {"t": int, "m": {name: array}, "v": {name: array}}
        (the optimiser's own arrays, not copies).

        Examples
        --------
        >>> params = {"w": np.array([1.0])}
        >>> opt = AdamW(params)
        >>> opt.step(params, {"w": np.array([0.5])}, lr=0.1)
        >>> state = opt.state_dict()
        >>> state["t"], state["m"]["w"], state["v"]["w"]      # m = 0.1 g, v = 0.001 g²
        (1, array([0.05]), array([0.00025]))
        """
        return {"t": self.t, "m": self.m, "v": self.v}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict` (its moments are copied).

        Examples
        --------
        >>> params = {"w": np.array([1.0])}
        >>> opt = AdamW(params)
        >>> opt.step(params, {"w": np.array([0.5])}, lr=0.1)
        >>> resumed = AdamW(params)
        >>> resumed.load_state_dict(opt.state_dict())
        >>> resumed.t, resumed.m["w"]
        (1, array([0.05]))
        """
        self.t = int(state["t"])
        self.m = {k: np.array(v) for k, v in state["m"].items()}
        self.v = {k: np.array(v) for k, v in state["v"].items()}


# ----------------------------------------------------------------------------- data
def split_corpus(ids, val_fraction: float = 0.1):
    """The first (1 - val_fraction) of the corpus for training, the rest for validation.

    Examples
    --------
    >>> split_corpus(np.arange(10), val_fraction=0.2)
    (array([0, 1, 2, 3, 4, 5, 6, 7]), array([8, 9]))
    """
    ids = np.asarray(ids)
    n = int(len(ids) * (1.0 - val_fraction))
    return ids[:n], ids[n:]


def get_batch(data, batch_size: int, context: int, rng: np.random.Generator):
    """Random contiguous windows: x (B, T) = data[i : i+T], y (B, T) = data[i+1 : i+T+1].

    Examples
    --------
    >>> x, y = get_batch(np.arange(20), batch_size=2, context=4, rng=np.random.default_rng(0))
    >>> x
    array([[13, 14, 15, 16],
           [10, 11, 12, 13]])
    >>> y                                     # each row of x shifted by one: the next tokens
    array([[14, 15, 16, 17],
           [11, 12, 13, 14]])
    """
    if len(data) < context + 1:
        raise ValueError(f"the data has {len(data)} tokens; a window of context {context} "
                         f"needs at least {context + 1}")
    starts = rng.integers(0, len(data) - context, size=batch_size)        # (B,)
    index = starts[:, None] + np.arange(context)                          # (B, T)
    return data[index].astype(np.int64), data[index + 1].astype(np.int64)


def estimate_loss(model: GPT, data, batch_size: int, context: int, iters: int, seed) -> float:
    """Mean loss over ``iters`` random batches drawn from a Generator seeded with ``seed``
    (dropout-free: evaluation mode).

    Examples
    --------
    An untrained model guesses about uniformly: a loss near log V = log 4 ≈ 1.39.

    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> data = np.array([0, 1, 2, 3] * 10)
    >>> round(estimate_loss(model, data, batch_size=4, context=8, iters=2, seed=0), 2)
    1.39
    """
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
    deterministic figure, unlike the random-batch estimate of :func:`estimate_loss`.

    Examples
    --------
    40 tokens make 4 windows of 8 (39 targets; the last 7 tokens predict nothing):

    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> round(split_loss(model, np.array([0, 1, 2, 3] * 10)), 2)
    1.41
    """
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


def training_memory(config: GPTConfig, batch_size: int, dtype=np.float32) -> int:
    """About how many bytes training needs: the parameters, their gradients and AdamW's two
    moments (4 numbers a parameter), and the activations a step keeps for its backward pass
    (B·T·(L·(16 C + 2 H T) + 3 V) numbers: each block's vectors, its attention scores and
    probabilities, the logits). A rough figure, computed without allocating anything, to
    refuse sizes that cannot fit.

    Examples
    --------
    The command line's default model (4 layers, d_model 128, context 64, batch 12) on a
    vocabulary of 65: about 45 MB.

    >>> cfg = GPTConfig(vocab_size=65, context_length=64, d_model=128, num_heads=4, num_layers=4)
    >>> round(training_memory(cfg, batch_size=12) / 1e6)
    45
    """
    V, T, C = config.vocab_size, config.context_length, config.d_model
    H, L = config.num_heads, config.num_layers
    params = num_parameters(config)
    activations = batch_size * T * (L * (16 * C + 2 * H * T) + 3 * V)
    return (4 * params + activations) * np.dtype(dtype).itemsize


def num_parameters(config: GPTConfig) -> int:
    """How many numbers the parameters of ``config`` hold, counted from their shapes
    (:func:`npgpt.model.parameter_shapes`) without making an array or a table of every layer:
    the blocks are alike, so L times one block's sizes, plus what lies around the blocks
    (token and position tables, the final norm, the output layer and its bias). Absurd sizes
    cost nothing to count.

    Examples
    --------
    >>> num_parameters(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
    3770
    """
    def size(shapes):
        return sum(math.prod(shape) for shape in shapes.values())
    block = size(block_parameter_shapes(config, 0))
    around = size(parameter_shapes(config.replace(num_layers=1))) - block
    return around + config.num_layers * block


# ----------------------------------------------------------------------------- architectures
ARCHITECTURES = ("gpt", "llama")


def matched_ffn_dim(config: GPTConfig, num_kv_heads: int | None = None, multiple: int = 8) -> int:
    """The SwiGLU width F that gives the Llama-style model of ``config``'s sizes (see
    :func:`model_config`) about as many parameters as the GPT ``config``.

    Per block, GPT has 12 C² + 13 C parameters: attention 4 C² + 4 C, the GELU MLP
    (C -> 4C -> C) 8 C² + 5 C, two LayerNorms 4 C; the model adds a position table T·C.
    The Llama-style block has attention C·H·D + 2 C·Hkv·D + H·D·C (4 C² without grouped
    queries, fewer with), two RMSNorm gains 2 C, and the SwiGLU MLP 3 C·F (gate, up, down,
    no biases), so each unit of F adds 3 C·L parameters. F is the multiple of ``multiple``
    nearest to the width that makes the totals equal: about 8C/3 per block, a little more
    because the position table and the biases must be made up too.

    Examples
    --------
    >>> gpt = GPTConfig(vocab_size=65, context_length=128, d_model=128, num_heads=4, num_layers=4)
    >>> matched_ffn_dim(gpt), matched_ffn_dim(gpt, num_kv_heads=1)
    (352, 416)
    """
    base = model_config("llama", config, num_kv_heads=num_kv_heads, ffn_dim=multiple)
    per_unit = 3 * config.d_model * config.num_layers           # parameters per unit of F
    width = multiple + (num_parameters(config) - num_parameters(base)) / per_unit
    return max(multiple, multiple * round(width / multiple))


def model_config(arch: str, config: GPTConfig, num_kv_heads: int | None = None,
                 ffn_dim: int | None = None) -> GPTConfig:
    """The config of architecture ``arch`` with the sizes (vocabulary, context, d_model, heads,
    layers, tied embeddings) of the GPT ``config``.

    ``"gpt"``: ``config`` itself. ``"llama"``: RMSNorm, rotary positions, SwiGLU, no output
    bias, ``num_kv_heads`` key/value heads (None: as many as query heads) and the SwiGLU width
    ``ffn_dim`` (None: :func:`matched_ffn_dim`, the same parameter count as the GPT).

    Raises
    ------
    ValueError
        ``arch`` is not one of :data:`ARCHITECTURES`, ``num_kv_heads`` is given for GPT, or
        the GPT settings have no Llama counterpart (dropout, the tanh GELU, the seed's block).

    Examples
    --------
    >>> gpt = GPTConfig(vocab_size=65, context_length=128, d_model=128, num_heads=4, num_layers=4)
    >>> llama = model_config("llama", gpt)
    >>> llama.norm, llama.positions, llama.mlp, llama.ffn_dim, llama.output_bias
    ('rmsnorm', 'rope', 'swiglu', 352, False)
    >>> num_parameters(gpt), num_parameters(llama)
    (826433, 820608)
    >>> model_config("bert", gpt)
    Traceback (most recent call last):
    ...
    ValueError: arch must be one of ('gpt', 'llama'), got 'bert'
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    if arch == "gpt":
        if num_kv_heads is not None:
            raise ValueError(f"num_kv_heads={num_kv_heads!r} needs arch='llama' (GPT's attention "
                             f"has one key/value head per query head)")
        return config
    for name, gpt_only in (("dropout", config.dropout > 0), ("gelu", config.gelu != "exact"),
                           ("residual", config.residual != "pre_norm")):
        if gpt_only:
            raise ValueError(f"{name}={getattr(config, name)!r} has no counterpart in the "
                             f"Llama-style block (arch='llama')")
    if ffn_dim is None:
        ffn_dim = matched_ffn_dim(config, num_kv_heads)
    return config.replace(norm="rmsnorm", positions="rope", mlp="swiglu", output_bias=False,
                          num_kv_heads=num_kv_heads, ffn_dim=ffn_dim)


def architecture(config: GPTConfig) -> str:
    """``"llama"`` for a config with rotary positions, else ``"gpt"``.

    >>> architecture(GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1))
    'gpt'
    """
    return "llama" if config.positions == "rope" else "gpt"


# ----------------------------------------------------------------------------- checkpoints
# The checkpoint is written with npgpt.io's atomic_write: a temporary .ckpt.npz.PID.HEX.part
# renamed over it; clean_stale_temporaries removes those whose writer PID is gone. npgpt
# 0.1.0 saved checkpoints through .tmp-XXXXXXXX.npz instead: removed once an hour old.
_LEGACY_TEMPORARY = re.compile(r"^\.tmp-[a-z0-9_]{8}\.npz$")
_LEGACY_AGE = 3600.0                                              # seconds


def _remove_stale_temporaries(folder: str) -> list:
    """Delete what saves killed midway left in ``folder``: npgpt's temporaries whose writer
    is gone (:func:`npgpt.io.clean_stale_temporaries`, for checkpoints and models alike),
    and the ``.tmp-XXXXXXXX.npz`` of older versions once an hour old. Nothing else is
    touched. Returns the names removed.

    Examples
    --------
    >>> os.makedirs("run")
    >>> for name in (".ckpt.npz.999999999.0123456789ab.part", "notes.txt", ".tmp-notes"):
    ...     open(os.path.join("run", name), "w").close()
    >>> _remove_stale_temporaries("run")             # no process 999999999: its writer is gone
    ['.ckpt.npz.999999999.0123456789ab.part']
    >>> sorted(os.listdir("run"))
    ['.tmp-notes', 'notes.txt']
    """
    from .io import clean_stale_temporaries

    removed = clean_stale_temporaries(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return removed
    for name in names:
        path = os.path.join(folder, name)
        try:
            if (_LEGACY_TEMPORARY.match(name) and os.path.isfile(path)
                    and time.time() - os.path.getmtime(path) > _LEGACY_AGE):
                os.unlink(path)
                removed.append(name)
        except OSError:                     # gone meanwhile, or not ours to remove
            continue
    return removed


def _atomic_savez(path: str, arrays: dict) -> None:
    """np.savez through a temporary beside ``path`` (mode 0o666 less the umask, like any new
    file), flushed to disk, then renamed over ``path``."""
    from .io import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _require_finite(state: "TrainState") -> None:
    """A TrainingError unless every parameter and both AdamW moments are finite."""
    for what, arrays in (("parameter", state.model.params), ("AdamW moment m of", state.optimizer.m),
                         ("AdamW moment v of", state.optimizer.v)):
        for name, value in arrays.items():
            if not np.isfinite(value).all():
                raise TrainingError(f"at step {state.step} the {what} {name!r} is not finite: the run "
                                    f"diverged; a non-finite state is never saved")


def save_checkpoint(path: str, state: "TrainState") -> None:
    """Write the whole training state (model, optimiser moments, RNG, step, history) to one
    .npz, atomically (a temporary file renamed over the old one). No pickles: metadata is JSON.

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> state = TrainState.new(model, TrainConfig())
    >>> save_checkpoint("ckpt.npz", state)
    >>> with np.load("ckpt.npz") as f:              # JSON metadata, then param/, m/, v/ arrays
    ...     meta = json.loads(str(f["meta"]))
    ...     shapes = f["param/token_embedding.weight"].shape, f["m/token_embedding.weight"].shape
    >>> meta["format"], meta["step"], shapes
    ('npgpt-train-1', 0, ((4, 16), (4, 16)))

    A state whose parameters or moments are not finite (a diverged run) is refused with a
    :class:`TrainingError`: the file keeps its last finite state.
    """
    _require_finite(state)
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
        "run_id": state.run_id,
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    for name, value in model.params.items():
        arrays["param/" + name] = value
        arrays["m/" + name] = state.optimizer.m[name]
        arrays["v/" + name] = state.optimizer.v[name]
    _atomic_savez(path, arrays)


def load_checkpoint(path: str) -> "TrainState":
    """Read a checkpoint written by :func:`save_checkpoint` (never unpickles anything).

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> state = TrainState.new(model, TrainConfig())
    >>> x, y = get_batch(np.array([0, 1, 2, 3] * 10), 4, 8, state.rng)
    >>> _ = train_step(state, x, y)
    >>> save_checkpoint("ckpt.npz", state)
    >>> restored = load_checkpoint("ckpt.npz")
    >>> restored.step, restored.optimizer.t, restored.train_config == state.train_config
    (1, 1, True)
    >>> all(np.array_equal(restored.model.params[k], v) for k, v in model.params.items())
    True

    Anything else (not an .npz archive, a truncated file, metadata or arrays that do not
    fit together) raises one ValueError that says what is wrong, before any model is built.

    >>> with open("broken.npz", "wb") as f:
    ...     _ = f.write(b"not a zip")
    >>> load_checkpoint("broken.npz")
    Traceback (most recent call last):
        ...
    ValueError: cannot read training checkpoint broken.npz: it is not an .npz archive
    """
    meta, arrays = _read_checkpoint(path)
    try:
        _check_meta(meta)
        return _state_from_checkpoint(meta, arrays)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"cannot read training checkpoint {path}: {_one_line(err)}") from None


_META_KEYS = ("format", "config", "train_config", "step", "best_val", "history", "rng",
              "adam_t", "decay", "tokenizer")
_RUN_ID_RE = re.compile(r"^[0-9a-f]{16}$")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _read_checkpoint(path: str):
    """(metadata, {name: array}) of a checkpoint file, or a ValueError saying what is wrong."""
    try:
        with open(path, "rb") as probe:
            if probe.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):      # a zip file's first bytes
                raise ValueError("it is not an .npz archive")
        with np.load(path, allow_pickle=False) as f:
            if "meta" not in f.files:
                raise ValueError("it has no 'meta' entry")
            text = f["meta"]
            if text.ndim != 0 or text.dtype.kind != "U":
                raise ValueError(f"its 'meta' is not a JSON text but {text.dtype} {list(text.shape)}")
            try:
                meta = json.loads(str(text))
            except json.JSONDecodeError as err:
                raise ValueError(f"its 'meta' is not valid JSON ({err})") from None
            arrays = {k: f[k] for k in f.files if k != "meta"}
    except (zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"cannot read training checkpoint {path}: it is not a complete .npz "
                         f"archive ({_one_line(err)})") from None
    except (OSError, KeyError, ValueError, zlib.error) as err:        # JSONDecodeError is a ValueError
        raise ValueError(f"cannot read training checkpoint {path}: {_one_line(err)}") from None
    return meta, arrays


def _is_record(record) -> bool:
    return (isinstance(record, dict) and set(record) == {"step", "train_loss", "val_loss", "best"}
            and isinstance(record["step"], int) and isinstance(record["best"], bool)
            and all(isinstance(record[k], (int, float)) for k in ("train_loss", "val_loss")))


def _check_meta(meta) -> None:
    """A ValueError unless the metadata has every entry, each of its type."""
    if not isinstance(meta, dict):
        raise ValueError(f"its metadata is not a JSON object but {type(meta).__name__}")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"format {meta.get('format')!r} is not {CHECKPOINT_FORMAT!r}")
    missing = [key for key in _META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"its metadata lacks {', '.join(missing)}")
    for key in ("step", "adam_t"):
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {value!r:.60}")
    best = meta["best_val"]
    if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))
                             or not math.isfinite(best)):
        raise ValueError(f"best_val must be a finite number or null, got {best!r:.60}")
    if not isinstance(meta["history"], list) or not all(map(_is_record, meta["history"])):
        raise ValueError("history must be a list of evaluation records {step, train_loss, val_loss, best}")
    for key in ("config", "train_config", "rng"):
        if not isinstance(meta[key], dict):
            raise ValueError(f"{key} must be a JSON object, got {meta[key]!r:.60}")
    if not isinstance(meta["decay"], list) or not all(isinstance(n, str) for n in meta["decay"]):
        raise ValueError(f"decay must be a list of parameter names, got {meta['decay']!r:.60}")
    if meta["tokenizer"] is not None and not isinstance(meta["tokenizer"], dict):
        raise ValueError(f"tokenizer must be a JSON object or null, got {meta['tokenizer']!r:.60}")
    run_id = meta.get("run_id")             # absent from checkpoints written before run ids
    if run_id is not None and not (isinstance(run_id, str) and _RUN_ID_RE.match(run_id)):
        raise ValueError(f"run_id must be 16 hex digits or null, got {run_id!r:.60}")


def _check_arrays(config: GPTConfig, arrays: dict) -> None:
    """A ValueError unless ``arrays`` holds param/, m/ and v/ of every parameter of
    ``config``, each of its shape, all of one float dtype."""
    per_block = 3 * len(block_parameter_shapes(config, 0))     # each parameter with m and v
    if per_block * config.num_layers > len(arrays):   # checked before listing them all: cheap
        raise ValueError(f"its config has {config.num_layers} layers but it holds only "
                         f"{len(arrays)} arrays")
    expected = {f"{kind}/{name}": shape for name, shape in parameter_shapes(config).items()
                for kind in ("param", "m", "v")}
    for problem, names in (("missing", set(expected) - set(arrays)), ("unexpected", set(arrays) - set(expected))):
        if names:
            listed = sorted(names)
            raise ValueError(f"{problem} arrays: {', '.join(listed[:3])}" + (" ..." if len(listed) > 3 else ""))
    dtype = arrays["param/token_embedding.weight"].dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"its parameters must be float32 or float64, got {dtype}")
    for name, shape in expected.items():
        value = arrays[name]
        if value.shape != tuple(shape) or value.dtype != dtype:
            raise ValueError(f"array {name!r} is {value.dtype} {list(value.shape)}, expected "
                             f"{dtype} {list(shape)}")


def _state_from_checkpoint(meta: dict, arrays: dict) -> "TrainState":
    config = GPTConfig.from_dict(meta["config"])
    train_config = TrainConfig(**meta["train_config"])
    _check_arrays(config, arrays)
    model = GPT(config, dtype=arrays["param/token_embedding.weight"].dtype)
    model.load_state_dict({k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")})
    if meta["tokenizer"] is not None:
        from .tokenizers import tokenizer_from_dict
        model.tokenizer = tokenizer_from_dict(meta["tokenizer"])
        if getattr(model.tokenizer, "vocab_size", 0) > config.vocab_size:
            raise ValueError(f"its tokenizer has {model.tokenizer.vocab_size} tokens but the model "
                             f"only {config.vocab_size}")
    optimizer = AdamW(model.params, (train_config.beta1, train_config.beta2), train_config.eps,
                      train_config.weight_decay, meta["decay"])
    optimizer.load_state_dict({"t": meta["adam_t"],
                               "m": {k[2:]: v for k, v in arrays.items() if k.startswith("m/")},
                               "v": {k[2:]: v for k, v in arrays.items() if k.startswith("v/")}})
    rng = np.random.default_rng()
    rng.bit_generator.state = meta["rng"]
    return TrainState(model, optimizer, rng, train_config, meta["step"], meta["best_val"],
                      meta["history"], meta.get("run_id"))


# ----------------------------------------------------------------------------- the loop
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


def _diverged(step: int, loss: float, norm: float, lr: float) -> str:
    return (f"training diverged at step {step}: the loss is {loss:.4g} and the gradient norm "
            f"{norm:.4g}; try a lower learning rate than {lr:g} (--lr); the diverged state is not "
            f"saved (an earlier checkpoint is kept)")


#: a training step's batch is cut into this many parts, each part's forward and backward
#: pass run in its own thread, when the step is large enough and dropout off (see below)
BATCH_PARTS = 2


def batch_loss_and_grads(model, x, y, rng=None, flops=None):
    """``model.loss_and_grads(x, y, rng)``, the batch cut into ``BATCH_PARTS`` parts whose
    passes run side by side in npgpt's threads.

    The loss is a mean over the batch's positions, so with parts of n_i of N positions,
    loss = Σ (n_i/N) loss_i and every gradient = Σ (n_i/N) grad_i: the same numbers up to
    float rounding. A baby-GPT step is hundreds of small NumPy operations; two threads
    splitting each of them (BLAS, row-split steps) wait on each other at every one -- and
    OpenBLAS's waiting thread spins, burning CPU time --, while two halves of the batch meet
    once (``benchmarks/bench_busy.py`` times it).

    The cut depends only on the work (at least 2 rows, ``flops`` >= ``threads.MIN_FLOPS``,
    no dropout, which draws from one generator in order), never on the machine's load: one
    thread runs the same parts one after the other, so a run's numbers do not depend on the
    threads it got (a resumed run stays bit-identical). Each part's matrix products keep to
    its own core (``threads.blas_threads``).

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=8, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> x = np.arange(32).reshape(4, 8) % 8
    >>> whole, parts = model.loss_and_grads(x, (x + 1) % 8), batch_loss_and_grads(model, x, (x + 1) % 8, flops=1e12)
    >>> bool(abs(whole[0] - parts[0]) < 1e-6)
    True
    """
    x, y = np.asarray(x), np.asarray(y)
    flops = 3 * x.size * model.num_parameters() if flops is None else flops
    parts = min(BATCH_PARTS, len(x)) if x.ndim == 2 else 1
    if parts < 2 or flops < threads.MIN_FLOPS or (rng is not None and model.config.dropout > 0):
        return model.loss_and_grads(x, y, rng=rng)
    bounds = [len(x) * i // parts for i in range(parts + 1)]
    calls = [lambda lo=lo, hi=hi: model.loss_and_grads(x[lo:hi], y[lo:hi], rng=rng)
             for lo, hi in zip(bounds[:-1], bounds[1:])]
    with threads.blas_threads(max(1, threads.get_num_threads() // parts)):
        results = together(calls)
    weights = [(hi - lo) / len(x) for lo, hi in zip(bounds[:-1], bounds[1:])]
    loss = sum(w * part_loss for w, (part_loss, _) in zip(weights, results))
    grads = results[0][1]
    for name, g in grads.items():                              # Σ (n_i/N) grad_i, in place
        g *= g.dtype.type(weights[0])
        for w, (_, part_grads) in zip(weights[1:], results[1:]):
            g += g.dtype.type(w) * part_grads[name]
    return float(loss), grads


def train_step(state: TrainState, x, y) -> dict:
    """One optimiser step on the batch (x, y): forward, backward, clip, AdamW.

    Returns {"step": steps done, "loss": the batch's loss before the step, "lr": the
    learning rate used, "grad_norm": the gradient norm before clipping}. A loss or gradient
    norm that is not finite raises :class:`TrainingError` before AdamW changes anything.

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> state = TrainState.new(model, TrainConfig(warmup=100, lr=1e-3))
    >>> x, y = get_batch(np.array([0, 1, 2, 3] * 10), 4, 8, state.rng)
    >>> info = train_step(state, x, y)
    >>> info["step"], round(info["lr"], 7), state.step       # lr: warm-up step 0 of 100
    (1, 9.9e-06, 1)
    """
    tc = state.train_config
    lr = learning_rate(state.step, tc)
    flops = 3 * np.size(x) * state.model.num_parameters()              # forward + backward: ~3x
    threads.for_work(flops)
    loss, grads = batch_loss_and_grads(state.model, x, y, state.rng, flops)
    norm = clip_grad_norm(grads, tc.grad_clip)
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise TrainingError(_diverged(state.step + 1, loss, norm, tc.lr))
    state.optimizer.step(state.model.params, grads, lr)
    state.step += 1
    return {"step": state.step, "loss": loss, "lr": lr, "grad_norm": norm}


def train(state: TrainState, train_data, val_data, out_dir: str | None = None,
          on_step: Callable[[dict], None] | None = None,
          on_eval: Callable[[dict], None] | None = None,
          stop_at: int | None = None, overwrite: bool = False) -> TrainState:
    """Run the loop from ``state.step`` to ``train_config.steps`` (or ``stop_at``).

    Every ``eval_interval`` steps (and at the end) the loss is estimated on both splits; a
    better validation loss writes ``out_dir/model.safetensors`` (loadable with
    ``npgpt.load``), and ``out_dir/ckpt.npz`` always holds the latest full state.

    A run never replaces another one. ``out_dir`` may be absent, empty, or hold other files
    (they are never touched: a run writes only :data:`RUN_FILES` and its lock). When it
    holds ``ckpt.npz`` or ``model.safetensors`` (:func:`run_in_folder`), ``train`` goes on
    only if ``state`` continues that run: the same run (``state.run_id``, as
    :func:`load_checkpoint` of its ``ckpt.npz`` gives) at the folder's step or later.
    Anything else — a new state, another run's, an older state of the same run, a
    ``model.safetensors`` without a checkpoint, a ``ckpt.npz`` that cannot be read — raises
    a :class:`TrainingError` naming ``out_dir`` and ``overwrite``, before anything is
    written. ``overwrite=True`` lets the run replace the folder's ``ckpt.npz`` and
    ``model.safetensors`` as it saves (until its first save they stay as they were);
    other files are kept.

    Interrupted runs lose nothing and resume bit-identically (with :func:`load_checkpoint`):

    - Ctrl-C (SIGINT, in the main thread) only asks the loop to stop: it stops at the next
      step boundary, saves that state and raises :class:`TrainingInterrupted` (a
      KeyboardInterrupt). A second Ctrl-C stops at once; every save is atomic.
    - A KeyboardInterrupt raised by code (``on_step``, ``on_eval``, or outside the main
      thread) rewinds the state to the last step boundary, saves it and raises
      :class:`TrainingInterrupted`; one that lands inside an AdamW update, where the
      parameters are half-updated, saves nothing (the last checkpoint is kept).
    - A run stopped between a step and its evaluation evaluates first when resumed.
    - While no evaluation has written ``model.safetensors`` (a run interrupted before its
      first), the saves on the way out write it too: the latest state, not yet evaluated.

    A loss or gradient norm that is not finite stops the run with a :class:`TrainingError`
    and saves nothing (the last checkpoint, finite, is kept). While it runs, ``train`` holds
    ``out_dir/.lock``: a second run on the same folder gets a :class:`TrainingError`; the
    temporaries of saves killed midway are removed.

    ``on_step(info)`` gets :func:`train_step`'s dict plus "seconds" and
    "tokens_per_second"; ``on_eval(record)`` gets :func:`evaluate`'s.

    Examples
    --------
    A corpus that repeats 0 1 2 3 is learnt in a few dozen steps (from log 4 ≈ 1.39):

    >>> data = np.array([0, 1, 2, 3] * 50)
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> tc = TrainConfig(batch_size=4, steps=60, lr=1e-2, min_lr=1e-3, warmup=5,
    ...                  eval_interval=20, eval_iters=2)
    >>> state = train(TrainState.new(model, tc), data[:160], data[160:], out_dir="run")
    >>> [r["step"] for r in state.history], state.best_val < 0.05
    ([20, 40, 60], True)
    >>> sorted(os.listdir("run"))
    ['ckpt.npz', 'model.safetensors']
    """
    tc = state.train_config
    end = tc.steps if stop_at is None else min(stop_at, tc.steps)
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be True or False, got {overwrite!r}")
    if out_dir is None:
        return _run(state, train_data, val_data, None, on_step, on_eval, end)
    with _FolderLock(out_dir):
        _check_out_dir(state, out_dir, overwrite)
        if state.run_id is None:                  # from now on its checkpoints name the run
            state.run_id = secrets.token_hex(8)
        _remove_stale_temporaries(out_dir)
        return _run(state, train_data, val_data, out_dir, on_step, on_eval, end)


def _checkpoint_meta(path: str):
    """The metadata dict of the training checkpoint ``path`` (only that entry is read), or
    None when it is not one that can be read."""
    from .io.files import open_regular

    try:
        with open_regular(path) as f:
            if f.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
                return None
            f.seek(0)
            with np.load(f, allow_pickle=False) as archive:
                meta = json.loads(str(archive["meta"]))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == CHECKPOINT_FORMAT else None


def run_in_folder(folder: str) -> str | None:
    """What of a training run ``folder`` holds, in a few words, or None when it holds
    none of :data:`RUN_FILES` (an absent or empty folder, or one of other files only).

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> os.makedirs("notes")
    >>> run_in_folder("notes") is None
    True
    >>> save_checkpoint("notes/ckpt.npz", TrainState.new(model, TrainConfig(steps=400)))
    >>> run_in_folder("notes")
    'a training run (ckpt.npz at step 0 of 400, not yet evaluated)'
    """
    present = [name for name in RUN_FILES if os.path.lexists(os.path.join(folder, name))]
    if not present:
        return None
    if "ckpt.npz" not in present:
        return "a model.safetensors (and no ckpt.npz to continue it from)"
    meta = _checkpoint_meta(os.path.join(folder, "ckpt.npz"))
    if meta is None:
        return "a ckpt.npz that is not a readable training checkpoint"
    best, tc = meta.get("best_val"), meta.get("train_config")
    steps = tc.get("steps") if isinstance(tc, dict) else None
    where = f"step {meta.get('step')}" + (f" of {steps}" if steps is not None else "")
    quality = (f"best validation loss {best:.4f}" if isinstance(best, (int, float))
               else "not yet evaluated")
    model = ", and its model.safetensors" if "model.safetensors" in present else ""
    return f"a training run (ckpt.npz at {where}, {quality}{model})"


def _continues(state: TrainState, meta: dict) -> bool:
    """Whether ``state`` continues the run whose checkpoint metadata is ``meta``: the same
    run id (both None for checkpoints older than run ids), at its step or later, its
    evaluations as the first of the state's."""
    step, history = meta.get("step"), meta.get("history")
    return (isinstance(step, int) and isinstance(history, list)
            and meta.get("run_id") == state.run_id and step <= state.step
            and state.history[:len(history)] == history)


def _check_out_dir(state: TrainState, out_dir: str, overwrite: bool) -> None:
    """A TrainingError unless training ``state`` into ``out_dir`` replaces no other run
    (see :func:`train`); a run file that is a folder is refused even with ``overwrite``."""
    for name in RUN_FILES:
        path = os.path.join(out_dir, name)
        if os.path.isdir(path):
            raise TrainingError(f"{path!r} is a folder where the run's {name} belongs; the run "
                                f"will not replace it: move it, or choose another out_dir")
    found = run_in_folder(out_dir)
    if found is None or overwrite:
        return
    checkpoint = os.path.join(out_dir, "ckpt.npz")
    meta = _checkpoint_meta(checkpoint)
    if meta is not None and _continues(state, meta):
        return
    saved_step = meta.get("step") if meta is not None else None
    if isinstance(saved_step, int) and meta.get("run_id") == state.run_id and saved_step > state.step:
        why = (f"holds step {saved_step} of this same run and the state is at step "
               f"{state.step}: training would replace the later steps")
    else:
        why = f"holds {found}, which this state does not continue"
    raise TrainingError(f"out_dir {out_dir!r} {why}; continue the folder's run with the state "
                        f"load_checkpoint({checkpoint!r}) gives, pass overwrite=True to replace its "
                        f"ckpt.npz and model.safetensors (other files are kept), or choose "
                        f"another out_dir")


def _run(state: TrainState, train_data, val_data, out_dir, on_step, on_eval, end: int) -> TrainState:
    """train()'s loop: Ctrl-C waits for a step boundary, other interrupts are rewound to one."""
    tc = state.train_config
    context = state.model.config.context_length
    tokens_per_step = tc.batch_size * context
    boundary = _Boundary()
    with _StopRequest() as stop:
        try:
            boundary.take(state)
            if _evaluation_pending(state):
                evaluate(state, train_data, val_data, out_dir, on_eval)
            while state.step < end and not stop.requested:
                boundary.take(state)
                start = time.perf_counter()
                x, y = get_batch(train_data, tc.batch_size, context, state.rng)
                info = train_step(state, x, y)
                info["seconds"] = time.perf_counter() - start
                info["tokens_per_second"] = tokens_per_step / info["seconds"]
                if on_step is not None:
                    on_step(info)
                if _evaluation_pending(state) and not stop.requested:
                    evaluate(state, train_data, val_data, out_dir, on_eval)
        except KeyboardInterrupt as err:
            step = state.step if boundary.rewind(state) else None
            raise TrainingInterrupted(step, () if step is None else _save_state(state, out_dir)) from err
        saved = _save_state(state, out_dir)
    if stop.requested:
        raise TrainingInterrupted(state.step, saved)
    return state


def _evaluation_pending(state: TrainState) -> bool:
    """Whether ``state.step`` is an evaluation step whose evaluation is not in the history
    (just stepped there, or resumed from a run interrupted before it evaluated)."""
    tc = state.train_config
    due = state.step % tc.eval_interval == 0 or state.step == tc.steps
    return state.step > 0 and due and not (state.history and state.history[-1]["step"] == state.step)


def _save_state(state: TrainState, out_dir) -> tuple:
    """Write ``out_dir/ckpt.npz``; while no evaluation has saved a model, write
    ``out_dir/model.safetensors`` too (the latest state, not yet evaluated). The paths."""
    if out_dir is None:
        return ()
    checkpoint = os.path.join(out_dir, "ckpt.npz")
    written = [checkpoint]
    if state.best_val is None:
        _require_finite(state)
        written.append(os.path.join(out_dir, "model.safetensors"))
        state.model.save(written[-1])
    save_checkpoint(checkpoint, state)
    return tuple(written)


class _Boundary:
    """What a step changes, as it was when the step began: enough to rewind a step that an
    exception cut short, without copying any array."""

    def take(self, state: TrainState) -> None:
        self.step, self.t = state.step, state.optimizer.t
        self.rng = state.rng.bit_generator.state
        self.history, self.best_val = len(state.history), state.best_val

    def rewind(self, state: TrainState) -> bool:
        """Back to a step boundary: True, or False when AdamW had begun the update (then the
        parameters are half-updated and nothing can be saved)."""
        del state.history[self.history:]          # an evaluation cut short is redone on resume
        state.best_val = self.best_val
        if state.step == self.step + 1:           # the step was done: its end is a boundary
            return True
        if state.step == self.step and state.optimizer.t == self.t:
            state.rng.bit_generator.state = self.rng      # undo the draws of batch and dropout
            return True
        return False


class _StopRequest:
    """While a run is on, the first SIGINT (Ctrl-C) only sets ``requested``: the loop stops at
    the next step boundary. A second one raises KeyboardInterrupt at once. Outside the main
    thread, where no handler can be installed, or when SIGINT is ignored, it does nothing."""

    def __init__(self):
        self.requested = False
        self._previous = None
        self._installed = False

    def __enter__(self) -> "_StopRequest":
        try:
            if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
                self._previous = signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        except ValueError:                         # not the main thread
            pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._installed:
            previous = self._previous if self._previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, previous)
            self._installed = False


class _FolderLock:
    """``folder/.lock`` held for a run: flock where there is fcntl, else a file created
    exclusively that holds the pid (and is taken over when that process is gone). A second
    run on the same folder gets a TrainingError. The file is removed on release."""

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.fd = None

    def __enter__(self) -> "_FolderLock":
        try:
            os.makedirs(self.folder, exist_ok=True)
            for _ in range(10):                    # retried when the file went away meanwhile
                self.fd = self._flock() if fcntl is not None else self._create()
                if self.fd is not None:
                    return self
        except TrainingError:
            raise
        except OSError as err:
            raise TrainingError(f"cannot use the output folder {self.folder!r}: {err.strerror or err}") from None
        raise TrainingError(self._busy(None))

    def _busy(self, pid) -> str:
        holder = "another training run" + (f" (process {pid})" if pid else "")
        return f"{holder} is using the output folder {self.folder!r}; wait for it to end or choose another (--out)"

    def _flock(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise TrainingError(self._busy(pid)) from None
        except OSError:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:                               # its last holder removed it as we locked it
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def _create(self):
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            try:
                with open(self.path, "rb") as f:
                    pid = _read_pid(f.fileno())
                young = time.time() - os.path.getmtime(self.path) < 10.0  # its pid may be on its way
            except FileNotFoundError:              # released meanwhile: try again
                return None
            if (process_alive(pid) if pid else young):
                raise TrainingError(self._busy(pid)) from None
            _unlink_quietly(self.path)             # its run is gone
            return None
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def __exit__(self, *exc) -> None:
        if fcntl is not None:                      # remove it while still holding the lock
            _unlink_quietly(self.path)
            os.close(self.fd)
        else:
            os.close(self.fd)
            _unlink_quietly(self.path)


def _read_pid(fd: int):
    """The pid written in a lock file, or None."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def evaluate(state: TrainState, train_data, val_data, out_dir=None, on_eval=None) -> dict:
    """Estimate train and validation loss; keep the best model and write checkpoints.

    Returns (and appends to ``state.history``) {"step", "train_loss", "val_loss", "best":
    whether the validation loss is the lowest yet}. A loss that is not finite (a diverged
    model) raises :class:`TrainingError` and changes nothing: it is never recorded as best.

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> state = TrainState.new(model, TrainConfig(batch_size=4, eval_iters=2))
    >>> data = np.array([0, 1, 2, 3] * 10)
    >>> record = evaluate(state, data[:30], data[30:])
    >>> record["step"], round(record["val_loss"], 2), record["best"], state.best_val == record["val_loss"]
    (0, 1.38, True, True)
    """
    tc = state.train_config
    context = state.model.config.context_length
    seed = [tc.seed, state.step]        # its own stream: evaluation never shifts training's
    record = {"step": state.step,
              "train_loss": estimate_loss(state.model, train_data, tc.batch_size, context, tc.eval_iters, seed),
              "val_loss": estimate_loss(state.model, val_data, tc.batch_size, context, tc.eval_iters, seed)}
    if not (math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"])):
        raise TrainingError(f"at step {state.step} the estimated loss is not finite (train "
                            f"{record['train_loss']:.4g}, validation {record['val_loss']:.4g}): the "
                            f"run diverged; nothing is recorded or saved")
    if out_dir is not None:
        _require_finite(state)
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
