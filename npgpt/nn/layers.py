"""The elementary layers, in the order the forward pass meets them: embedding, LayerNorm,
linear, softmax, GELU (and the dropout mask that training multiplies in). Each ``<layer>_forward(...) -> (out, cache)`` sits beside its
``<layer>_backward(dout, cache)``, whose docstring derives the gradient from the forward line.

Shapes: B batch, T tokens, C = d_model, V vocabulary; ``(..., C)`` means any leading axes.
Weights are in PyTorch's layouts (``nn.Linear.weight`` is (out_features, in_features)).
"""

from __future__ import annotations

import math

import numpy as np

from .erf import erf
from .part import Part

SQRT_2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# ------------------------------------------------------------------------------ embedding
TOKEN_TABLE = "token_embedding.weight"             # (V, C), the seed's names
POSITION_TABLE = "position_encoding.weight"        # (context_length, C)


def embedding_forward(ids, token_table, position_table, positions):
    """x[b, t] = token_table[ids[b, t]] + position_table[positions[b, t]].

    Parameters
    ----------
    ids : int ndarray (B, T), every id in [0, V).
    token_table : ndarray (V, C), ``token_embedding.weight``.
    position_table : ndarray (context_length, C), ``position_encoding.weight``.
    positions : int ndarray (T,) or (B, T), every value in [0, context_length).

    Returns
    -------
    x : ndarray (B, T, C)
    cache : (ids, positions, token_table, context_length) for :func:`embedding_backward`.

    Examples
    --------
    >>> x, _ = embedding_forward(np.array([[1]]), np.eye(2), np.zeros((4, 2)), np.arange(1))
    >>> x.tolist()
    [[[0.0, 1.0]]]
    """
    x = token_table[ids] + position_table[positions]      # (B, T, C) + (T, C) or (B, T, C)
    return x, (ids, positions, token_table, position_table.shape[0])


def embedding_backward(dx, cache, dtoken=None):
    """Gradients of the two lookup tables.

    forward: x[b, t] = token_table[ids[b, t]] + position_table[positions[b, t]], so each
    row of a table receives the sum of dx over every place it was looked up (a scatter-add:
    a token id repeated in the batch accumulates, it is not overwritten).

    Parameters
    ----------
    dx : ndarray (B, T, C)
    cache : from :func:`embedding_forward`.
    dtoken : ndarray (V, C) or None; if given, the token table's gradient is added into it
        (another use of the same table, e.g. a tied output layer), else into zeros.

    Returns
    -------
    dtoken_table : ndarray (V, C); dposition_table : ndarray (context_length, C).

    Examples
    --------
    >>> _, cache = embedding_forward(np.array([[1, 1]]), np.eye(2), np.zeros((2, 2)), np.arange(2))
    >>> dtoken, dposition = embedding_backward(np.ones((1, 2, 2)), cache)
    >>> dtoken.tolist(), dposition.tolist()          # token 1 was looked up twice
    ([[0.0, 0.0], [2.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]])
    """
    ids, positions, token_table, P = cache
    C = dx.shape[-1]
    if dtoken is None:
        dtoken = np.zeros(token_table.shape, dtype=dx.dtype, order=_order(token_table))  # its table's layout
    np.add.at(dtoken, ids.ravel(), dx.reshape(-1, C))                      # scatter-add rows
    dposition = np.zeros((P, C), dtype=dx.dtype)
    positions = np.broadcast_to(positions, ids.shape)                      # (T,) -> (B, T)
    np.add.at(dposition, positions.ravel(), dx.reshape(-1, C))
    return dtoken, dposition


def scatter_add_rows(out, index, rows):
    """out[index[i]] += rows[i] for every i, a repeated index accumulating: ``np.add.at(out,
    index, rows)`` computed by sorting instead (4.5x faster on a baby-GPT batch's 768 rows of
    128; the sums differ from np.add.at's by float rounding only, in the order of addition).

    Parameters
    ----------
    out : ndarray (V, C), updated in place; index : int ndarray (N,); rows : ndarray (N, C).

    Examples
    --------
    >>> out = np.zeros((3, 2))
    >>> scatter_add_rows(out, np.array([2, 0, 2]), np.array([[1.0, 1.0], [5.0, 5.0], [2.0, 3.0]]))
    >>> out.tolist()
    [[5.0, 5.0], [0.0, 0.0], [3.0, 4.0]]
    """
    if len(index) == 0:
        return
    order = np.argsort(index, kind="stable")                               # equal ids side by side
    ids = index[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])              # each id's first row
    out[ids[starts]] += np.add.reduceat(rows[order], starts, axis=0)       # one sum per distinct id


def embedding_backward_fast(dx, cache, dtoken=None):
    """:func:`embedding_backward` with :func:`scatter_add_rows` in place of ``np.add.at`` (and
    positions shared by every row of the batch summed over the batch first): the same
    gradients up to float rounding (tested).

    Examples
    --------
    >>> _, cache = embedding_forward(np.array([[1, 1]]), np.eye(2), np.zeros((2, 2)), np.arange(2))
    >>> [g.tolist() for g in embedding_backward_fast(np.ones((1, 2, 2)), cache)]
    [[[0.0, 0.0], [2.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]]]
    """
    ids, positions, token_table, P = cache
    C = dx.shape[-1]
    if dtoken is None:
        dtoken = np.zeros(token_table.shape, dtype=dx.dtype, order=_order(token_table))
    scatter_add_rows(dtoken, ids.ravel(), dx.reshape(-1, C))
    dposition = np.zeros((P, C), dtype=dx.dtype)
    if positions.ndim == 1:                                  # (T,): the same for every row
        scatter_add_rows(dposition, positions, dx.reshape(-1, len(positions), C).sum(axis=0))
    else:
        scatter_add_rows(dposition, positions.ravel(), dx.reshape(-1, C))
    return dtoken, dposition


def _product_like(like, a, b):
    """a @ b, computed so that it comes out with the memory layout of ``like``."""
    return (b.T @ a.T).T if _order(like) == "F" else a @ b


def _order(a):
    """"F" for a column-major matrix, else "C"."""
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


# ------------------------------------------------------------------------------ LayerNorm
def layernorm_forward(x, weight, bias, eps=1e-5):
    """y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias, statistics over the last axis.

    The variance is the biased one (divide by C), as in ``torch.nn.LayerNorm``.

    Parameters
    ----------
    x : ndarray (..., C)
    weight, bias : ndarray (C,)
    eps : float

    Returns
    -------
    y : ndarray (..., C), the dtype of x.
    cache : (xhat, rstd, weight) for :func:`layernorm_backward`; xhat (..., C) is the
        normalised input (mean 0, variance 1 per row up to eps), rstd (..., 1) = 1/sqrt(var+eps).

    Examples
    --------
    >>> y, _ = layernorm_forward(np.array([[1.0, 3.0]]), np.ones(2), np.zeros(2))
    >>> y.round(3).tolist()
    [[-1.0, 1.0]]
    """
    C = x.shape[-1]
    mean = x.sum(axis=-1, keepdims=True) / C              # (..., C) -> (..., 1)
    xc = x - mean
    var = (xc * xc).sum(axis=-1, keepdims=True) / C       # (..., C) -> (..., 1)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = xc * rstd                                      # normalise: mean 0, variance 1
    y = xhat * weight + bias                              # scale and shift
    return y, (xhat, rstd, weight)


def layernorm_backward(dy, cache):
    """Gradients of LayerNorm.

    forward: xhat = (x - μ) · rstd, y = xhat · w + b, with μ and rstd = 1/√(σ² + ε) per row.
    So db = Σ dy, dw = Σ dy · xhat (sums over rows), and with g = dy · w (the gradient at xhat),
    dx = rstd · (g - mean(g) - xhat · mean(g · xhat))   (means over the last axis)
    — the two subtracted terms are the paths through μ and through σ².

    Parameters
    ----------
    dy : ndarray (..., C)
    cache : from :func:`layernorm_forward`.

    Returns
    -------
    dx : ndarray (..., C); dweight, dbias : ndarray (C,).

    Examples
    --------
    >>> _, cache = layernorm_forward(np.array([[1.0, 3.0]]), np.ones(2), np.zeros(2))
    >>> dx, dweight, dbias = layernorm_backward(np.array([[1.0, 1.0]]), cache)
    >>> dx.round(6).tolist(), dweight.round(4).tolist(), dbias.tolist()   # a shift of x changes nothing
    ([[0.0, 0.0]], [-1.0, 1.0], [1.0, 1.0])
    """
    xhat, rstd, weight = cache
    C = xhat.shape[-1]
    dbias = dy.reshape(-1, C).sum(axis=0)                                  # (..., C) -> (C,)
    dweight = (dy * xhat).reshape(-1, C).sum(axis=0)                       # (..., C) -> (C,)
    g = dy * weight                                                        # the gradient at xhat
    mean_g = g.sum(axis=-1, keepdims=True) / C                             # (..., 1)
    mean_gx = (g * xhat).sum(axis=-1, keepdims=True) / C                   # (..., 1)
    dx = (g - mean_g - xhat * mean_gx) * rstd
    return dx, dweight, dbias


def layernorm_backward_fast(dy, cache):
    """:func:`layernorm_backward`'s math (from the same cache) with every sum a matrix-vector
    product: db = 1ᵀ dy, dw = 1ᵀ (dy · xhat), mean(g) = dy @ (w / C), mean(g · xhat) =
    (dy · xhat) @ (w / C) (g = dy · w, so both means need no g); 40% faster on (384, 128)
    rows, equal up to float rounding (tested). Training uses it; the forward stays
    :func:`layernorm_forward`, which inference reproduces bit for bit.

    Examples
    --------
    >>> _, cache = layernorm_forward(np.array([[1.0, 3.0]]), np.ones(2), np.zeros(2))
    >>> [g.round(4).tolist() for g in layernorm_backward_fast(np.array([[1.0, 1.0]]), cache)]
    [[[0.0, 0.0]], [-1.0, 1.0], [1.0, 1.0]]
    """
    xhat, rstd, weight = cache
    C = xhat.shape[-1]
    dy_xhat = dy * xhat
    ones = np.ones(dy.size // C, dtype=dy.dtype)
    dbias = ones @ dy.reshape(-1, C)                                       # (N,) @ (N, C) -> (C,)
    dweight = ones @ dy_xhat.reshape(-1, C)
    w_mean = weight / dy.dtype.type(C)                                     # (C,)
    mean_g = (dy @ w_mean)[..., None]                                      # (..., 1)
    mean_gx = (dy_xhat @ w_mean)[..., None]
    dx = dy * weight                                                       # g
    dx -= mean_g
    dy_xhat = np.multiply(xhat, mean_gx, out=dy_xhat)                      # reuse: xhat · mean(g · xhat)
    dx -= dy_xhat
    dx *= rstd
    return dx, dweight, dbias


def layernorm_of(x, params, name, config):
    """:func:`layernorm_forward` of x with ``params[name + ".weight"]``, ``[name + ".bias"]``
    and ε = ``config.layer_norm_eps``.

    Examples
    --------
    >>> from npgpt import GPTConfig
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=2, num_heads=1, num_layers=1)
    >>> y, _ = layernorm_of(np.array([[1.0, 3.0]]), {"ln1.weight": np.ones(2), "ln1.bias": np.zeros(2)}, "ln1", cfg)
    >>> y.round(3).tolist()
    [[-1.0, 1.0]]
    """
    return layernorm_forward(x, params[name + ".weight"], params[name + ".bias"], config.layer_norm_eps)


def layernorm_grads(dy, cache):
    """:func:`layernorm_backward` as (dx, {"weight": dweight, "bias": dbias}).

    Examples
    --------
    >>> _, cache = layernorm_forward(np.array([[1.0, 3.0]]), np.ones(2), np.zeros(2))
    >>> dx, grads = layernorm_grads(np.ones((1, 2)), cache)
    >>> sorted(grads), grads["bias"].tolist()
    (['bias', 'weight'], [1.0, 1.0])
    """
    dx, dweight, dbias = layernorm_backward_fast(dy, cache)
    return dx, {"weight": dweight, "bias": dbias}


LAYERNORM = Part("layernorm", ("ln1", "ln2", "ln_final"),           # a block's two, the final one
                 lambda config: {"weight": (config.d_model,), "bias": (config.d_model,)},
                 layernorm_of, layernorm_grads)


# ------------------------------------------------------------------------------ linear
OUTPUT_WEIGHT = "output_layer.weight"              # the model's output layer: (V, C)
OUTPUT_BIAS = "output_layer.bias"                  # (V,)


def linear_forward(x, weight, bias=None):
    """y = x @ weight.T + bias.

    Parameters
    ----------
    x : ndarray (..., IN)
    weight : ndarray (OUT, IN), ``nn.Linear.weight``'s layout.
    bias : ndarray (OUT,) or None

    Returns
    -------
    y : ndarray (..., OUT)
    cache : (x, weight, has_bias) for :func:`linear_backward`.

    Examples
    --------
    >>> linear_forward(np.ones((1, 2)), np.array([[1.0, 2.0]]), np.array([0.5]))[0].tolist()
    [[3.5]]
    """
    # one 2-D matrix product over every leading position (a (B, T, IN) product would run B)
    y = x.reshape(-1, x.shape[-1]) @ weight.T             # (N, IN) @ (IN, OUT) -> (N, OUT)
    if bias is not None:
        y += bias
    return y.reshape(*x.shape[:-1], weight.shape[0]), (x, weight, bias is not None)


def linear_backward(dy, cache):
    """Gradients of y = x @ weight.T + bias.

    forward: y = x @ Wᵀ + b, so dx = dy @ W, dW = dyᵀ @ x (summed over every leading axis),
    db = dy summed over every leading axis. dW comes out in the weight's own memory layout
    (``npgpt.model.column_major``), so that the optimiser's updates run over matching arrays.

    Parameters
    ----------
    dy : ndarray (..., OUT), the gradient of the loss with respect to y.
    cache : from :func:`linear_forward`.

    Returns
    -------
    dx : ndarray (..., IN); dweight : ndarray (OUT, IN); dbias : ndarray (OUT,) or None.

    Examples
    --------
    >>> _, cache = linear_forward(np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]]), np.zeros(1))
    >>> [g.tolist() for g in linear_backward(np.array([[1.0]]), cache)]
    [[[3.0, 4.0]], [[1.0, 2.0]], [1.0]]
    """
    x, weight, has_bias = cache
    dy2 = dy.reshape(-1, dy.shape[-1])                    # (..., OUT) -> (N, OUT)
    dx = (dy2 @ weight).reshape(x.shape)                  # (N, OUT) @ (OUT, IN) -> (N, IN) -> (..., IN)
    dweight = _product_like(weight, dy2.T, x.reshape(-1, x.shape[-1]))   # (OUT, N) @ (N, IN) -> (OUT, IN)
    dbias = dy2.sum(axis=0) if has_bias else None         # (N, OUT) -> (OUT,)
    return dx, dweight, dbias


# ------------------------------------------------------------------------------ softmax
def softmax_forward(x):
    """p = exp(x - max x) / Σ exp(x - max x) along the last axis.

    Subtracting the row maximum changes nothing mathematically (softmax is shift-invariant)
    and keeps exp() from overflowing; -inf entries get probability exactly 0. A row whose
    entries are all -inf has no distribution: the caller must not produce one.

    Parameters
    ----------
    x : ndarray (..., N), float.

    Returns
    -------
    p : ndarray (..., N), rows sum to 1.

    Examples
    --------
    >>> softmax_forward(np.array([0.0, np.log(3.0)])).round(2).tolist()
    [0.25, 0.75]
    """
    p = x - x.max(axis=-1, keepdims=True)                 # (..., N), the largest entry is 0
    np.exp(p, out=p)                                      # exp in place: one array in all
    p /= p.sum(axis=-1, keepdims=True)                    # (..., N) / (..., 1)
    return p


def softmax_backward(dp, p):
    """Gradient of p = softmax(x) along the last axis.

    forward: p_i = exp(x_i) / Σ_j exp(x_j), so ∂p_i/∂x_k = p_i (δ_ik - p_k) and
    dx = p · (dp - Σ_i dp_i p_i).

    Parameters
    ----------
    dp : ndarray (..., N), the gradient at p; p : ndarray (..., N), softmax's output.

    Returns
    -------
    dx : ndarray (..., N)

    Examples
    --------
    >>> p = softmax_forward(np.array([0.0, 0.0]))
    >>> softmax_backward(np.array([1.0, 0.0]), p).tolist()     # raising x_0 moves mass to it
    [0.25, -0.25]
    """
    return (dp - (dp * p).sum(axis=-1, keepdims=True)) * p  # (..., N) - (..., 1)


# ------------------------------------------------------------------------------ GELU
def gelu_forward(x, approximate="exact"):
    """GELU(x) = x · Φ(x), the Gaussian error linear unit (Φ: the standard normal CDF).

    ``"exact"``: x · ½ (1 + erf(x / √2)) (``torch.nn.GELU()``).
    ``"tanh"``:  ½ x (1 + tanh(√(2/π) (x + 0.044715 x³))) (GPT-2's ``gelu_new``).

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64.
    approximate : {"exact", "tanh"}; "tanh" for GPT-2's form, otherwise the exact one
        (``GPTConfig`` admits only these two names).

    Returns
    -------
    out : ndarray, same shape and dtype as x.
    cache : tuple for :func:`gelu_backward`.

    Examples
    --------
    >>> out, _ = gelu_forward(np.array([0.0, 1.0]))
    >>> out.round(4).tolist()
    [0.0, 0.8413]
    """
    if approximate == "tanh":
        t = np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
        return 0.5 * x * (1.0 + t), (x, approximate, t)
    cdf = 0.5 * (1.0 + erf(x / SQRT_2))                                      # Φ(x)
    return x * cdf, (x, "exact", cdf)


def gelu_backward(dout, cache):
    """Gradient of GELU.

    exact: GELU(x) = x Φ(x), so GELU'(x) = Φ(x) + x φ(x) with φ(x) = exp(-x²/2) / √(2π).
    tanh:  GELU(x) = ½ x (1 + t), t = tanh(u), u = √(2/π)(x + 0.044715 x³), so
           GELU'(x) = ½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3 · 0.044715 x²).

    Parameters
    ----------
    dout : ndarray, the gradient at GELU's output; cache : from :func:`gelu_forward`.

    Returns
    -------
    dx : ndarray, same shape.

    Examples
    --------
    >>> _, cache = gelu_forward(np.array([0.0]))
    >>> gelu_backward(np.array([1.0]), cache).tolist()        # GELU'(0) = Φ(0) = ½
    [0.5]
    """
    x, approximate, saved = cache
    # written in place: on (B·T, 4C) training activations every temporary array costs page
    # faults, and a plain `dout * (cdf + x * pdf)` makes several of them
    if approximate == "exact":
        cdf = saved                                                          # Φ(x)
        grad = np.exp(-0.5 * np.square(x))
        grad *= x.dtype.type(1.0 / math.sqrt(2.0 * math.pi))                 # φ(x)
        grad *= x
        grad += cdf                                                          # Φ(x) + x φ(x)
        return dout * grad
    t = saved
    du = np.square(x)
    du *= 3 * 0.044715
    du += 1.0
    du *= SQRT_2_OVER_PI                                                     # du/dx
    grad = np.square(t)
    np.subtract(1.0, grad, out=grad)                                         # 1 - t²
    grad *= du
    grad *= x
    grad += t
    grad += 1.0
    grad *= 0.5                                                              # ½(1 + t) + ½ x (1 - t²) du/dx
    return dout * grad


# ------------------------------------------------------------------------------ dropout
def dropout_mask(shape, p, rng, dtype):
    """Inverted dropout's multiplier: 0 with probability p, else 1 / (1 - p), so that the
    expected value of ``x * mask`` is x. ``None`` (no dropout) when p is 0 or there is no
    Generator (evaluation mode).

    Examples
    --------
    >>> dropout_mask((1, 4), 0.5, np.random.default_rng(0), np.float32).tolist()
    [[2.0, 0.0, 0.0, 0.0]]
    >>> dropout_mask((1, 4), 0.5, None, np.float32) is None
    True
    """
    if p == 0.0 or rng is None:
        return None
    dtype = np.dtype(dtype).type
    return (rng.random(shape) >= p).astype(dtype) / dtype(1.0 - p)
