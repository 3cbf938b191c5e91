"""The math of one update (route 2 of READING.md ends here): the learning-rate schedule
(linear warm-up, cosine decay), global gradient-norm clipping, the parameters AdamW decays, and
AdamW itself.

Every function is pure or updates the arrays it is given in place; none knows of batches,
folders or checkpoints.
"""

from __future__ import annotations

import math

import numpy as np

from .._threads import each
from ..nn.block import NORMS
from ..nn.layers import POSITION_TABLE, TOKEN_TABLE
from .config import TrainConfig


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
# the names AdamW leaves undecayed, from the layers that own them: each norm family's gains
# ("ln1.weight", ..., "norm2.weight"; the final norm's whole prefix) and the two tables
_BLOCK_NORMS = tuple(f"{name}.weight" for norm in NORMS.values() for name in norm.names[:2])
_FINAL_NORMS = tuple(norm.names[2] for norm in NORMS.values())
_TABLES = (TOKEN_TABLE, POSITION_TABLE)


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
        if name.endswith(("bias", *_BLOCK_NORMS)) or name.startswith(_FINAL_NORMS):
            continue
        if name in _TABLES and not decay_embeddings:
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
