"""Rotary position embedding (RoPE): queries and keys rotated by an angle that grows with the
position, so that q·k depends on the two positions only through their difference.

Shapes: x (B, H, T, D), D = head_dim (even); positions (T,) or (B, T); inv_freq (D/2,);
tables cos, sin (T, D/2) or (B, T, D/2) — one entry per rotated pair, not duplicated to D.

The D channels of a head form D/2 pairs; pair i at position p turns by the angle p · inv_freq_i.
Two layouts say which channels pair up:

* ``"half"``: pairs (i, i + D/2), transformers' ``rotate_half`` (Llama, Qwen2, Mistral, ... on
  the Hugging Face hub).
* ``"interleaved"``: pairs (2i, 2i + 1), Meta's original Llama code and GPT-J.

A checkpoint converted from one layout to the other has the rows of its q and k projections
permuted accordingly; the two layouts compute the same thing up to that permutation.
"""

from __future__ import annotations

import math

import numpy as np

LAYOUTS = ("half", "interleaved")
_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


# ------------------------------------------------------------------------------ frequencies
def rope_frequencies(head_dim, theta=10000.0, scaling=None):
    """inv_freq_i = theta^(-2i / head_dim) for i = 0 .. head_dim/2 - 1, optionally rescaled.

    ``scaling`` is a model config's ``rope_scaling`` dict (or None):

    * None or ``{"rope_type": "default"}``: the frequencies above.
    * ``{"rope_type": "linear", "factor": f}``: inv_freq / f (positions stretched f times).
    * ``{"rope_type": "llama3", "factor": f, "low_freq_factor": lo, "high_freq_factor": hi,
      "original_max_position_embeddings": L}`` (Llama 3.1 / 3.2), with wavelength
      λ_i = 2π / inv_freq_i: λ_i < L/hi keeps inv_freq_i; λ_i > L/lo takes inv_freq_i / f; in
      between, s = (L/λ_i - lo) / (hi - lo) and inv_freq_i · ((1 - s)/f + s) — transformers'
      ``_compute_llama3_parameters`` line for line.

    Any other rope_type raises ValueError. All three keep transformers' attention factor at
    1.0 (cos and sin are not rescaled), so there is nothing else to return.

    Precision: transformers computes these in float32 (the exponent 2i/D, theta to that
    power, its reciprocal, the llama3 arithmetic), and its rotary tables multiply positions by
    those float32 values. At position p a one-ulp change of inv_freq_i moves the angle by
    about p · inv_freq_i · 6e-8, which is 3e-4 radians at p = 8192: too much to match its
    logits. So the steps are done in float32 here too (the power evaluated in float64 and
    rounded, which agrees with torch's float32 pow but for an occasional last bit); the
    result is returned in float64, holding those float32 values exactly: within one float32
    ulp (1.2e-7 relative) of the exact formula when D is a power of two, within 1e-6 when the
    exponent 2i/D itself had to be rounded.

    Parameters
    ----------
    head_dim : int, D, even.
    theta : float, the base (``rope_theta``: 10000 for Llama 2, 500000 for Llama 3).
    scaling : dict or None, as above.

    Returns
    -------
    inv_freq : float64 ndarray (D/2,)

    Examples
    --------
    >>> rope_frequencies(4).tolist()                 # 10000^0, 10000^(-1/2)
    [1.0, 0.009999999776482582]
    >>> rope_frequencies(4, scaling={"rope_type": "linear", "factor": 2.0}).tolist()
    [0.5, 0.004999999888241291]
    """
    if not isinstance(head_dim, (int, np.integer)) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"head_dim must be a positive even integer, got {head_dim!r}")
    if not theta > 0:
        raise ValueError(f"theta must be positive, got {theta!r}")
    if scaling is not None and not isinstance(scaling, dict):
        raise ValueError(f"scaling must be a dict or None, got {scaling!r}")
    if scaling is not None and scaling.get("rope_theta", theta) != theta:
        raise ValueError(f"scaling's rope_theta {scaling['rope_theta']!r} differs from theta {theta!r}")
    exponent = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)   # (D/2,) 2i/D
    with np.errstate(over="ignore"):    # theta past float32's range is inf, as in transformers
        power = (np.float64(np.float32(theta)) ** exponent.astype(np.float64)).astype(np.float32)
    inv_freq = np.float32(1.0) / power                                               # (D/2,) float32
    rope_type = None if scaling is None else scaling.get("rope_type")
    if rope_type in (None, "default"):
        pass
    elif rope_type == "linear":
        inv_freq = inv_freq / np.float32(_scaling_value(scaling, "factor", 1.0))
    elif rope_type == "llama3":
        inv_freq = _llama3_frequencies(inv_freq, scaling)
    else:
        raise ValueError(f"rope_type must be 'default', 'linear' or 'llama3', got {rope_type!r}")
    return inv_freq.astype(np.float64)


def rope_inv_freq(config):
    """The rotary frequencies of ``config`` (:func:`rope_frequencies` of its head size,
    ``rope_theta`` and ``rope_scaling``), float64 (D/2,).

    Examples
    --------
    >>> from npgpt import GPTConfig
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=2, num_layers=1,
    ...                 positions="rope", head_dim=4)
    >>> rope_inv_freq(cfg).tolist()
    [1.0, 0.009999999776482582]
    """
    return rope_frequencies(config.head_size, float(config.rope_theta), config.rope_scaling)


def _scaling_value(scaling, key, minimum):
    """scaling[key] as a float ≥ minimum (or > 0 when minimum is 0), else a ValueError."""
    if key not in scaling:
        raise ValueError(f"rope scaling {scaling.get('rope_type')!r} needs {key!r}, got keys {sorted(scaling)}")
    value = scaling[key]
    if not isinstance(value, (int, float, np.integer, np.floating)) or not (
            value >= minimum if minimum else value > 0) or not math.isfinite(value):
        bound = f">= {minimum}" if minimum else "> 0"
        raise ValueError(f"rope scaling {key} must be a finite number {bound}, got {value!r}")
    return float(value)


def _llama3_frequencies(inv_freq, scaling):
    """transformers' ``_compute_llama3_parameters`` after its first line, in float32."""
    factor = _scaling_value(scaling, "factor", 1.0)
    low_freq_factor = _scaling_value(scaling, "low_freq_factor", 0)
    high_freq_factor = _scaling_value(scaling, "high_freq_factor", 0)
    old_context_len = _scaling_value(scaling, "original_max_position_embeddings", 0)
    if high_freq_factor <= low_freq_factor:
        raise ValueError(f"high_freq_factor must exceed low_freq_factor, got {high_freq_factor!r} "
                         f"<= {low_freq_factor!r}")
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq                                  # (D/2,) float32
    # long wavelengths (low frequencies) slow down by factor, short ones stay
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    # in between: interpolate between the two with a smooth factor
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama).astype(np.float32)


# ------------------------------------------------------------------------------ tables
def rope_tables(positions, inv_freq, dtype):
    """cos and sin of the angles position · inv_freq, one per rotated pair.

    angle[..., t, i] = positions[..., t] · inv_freq[i].

    Precision: for float32 the product and cos/sin are computed in float32, as transformers'
    ``LlamaRotaryEmbedding.forward`` does (positions cast to float32 times its float32
    inv_freq), so that the tables agree with it to about 1e-7 at any position. For float64
    everything is float64 (gradient checks, and the exact rotation for these frequencies;
    transformers itself would still build float32 tables and cast them).

    Parameters
    ----------
    positions : int ndarray (T,) or (B, T) (a left-padded batch numbers each row's tokens
        from its own first real token).
    inv_freq : ndarray (D/2,), from :func:`rope_frequencies`.
    dtype : float32 or float64, the dtype of the tables (that of q and k).

    Returns
    -------
    cos, sin : ndarray (T, D/2) or (B, T, D/2), ``dtype``. (transformers' tables repeat these
        to (..., D); :func:`rope_forward` takes them as they are, for either layout.)

    Examples
    --------
    >>> cos, sin = rope_tables(np.arange(3), np.array([1.0, 0.5]), np.float64)
    >>> cos.shape, sin[2].round(4).tolist()             # sin(2 · 1), sin(2 · 0.5)
    ((3, 2), [0.9093, 0.8415])
    """
    positions = np.asarray(positions)
    if positions.dtype.kind not in "iu" or positions.ndim not in (1, 2):
        raise ValueError(f"positions must be an integer array (T,) or (B, T), got dtype "
                         f"{positions.dtype} and shape {positions.shape}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    inv_freq = np.asarray(inv_freq)
    if inv_freq.ndim != 1:
        raise ValueError(f"inv_freq must be 1-D (D/2,), got shape {inv_freq.shape}")
    angles = positions.astype(dtype)[..., None] * inv_freq.astype(dtype)   # (..., T, 1) * (D/2,) -> (..., T, D/2)
    return np.cos(angles), np.sin(angles)


# ------------------------------------------------------------------------------ rotation
def rope_forward(x, cos, sin, layout="half"):
    """Rotate each pair (a, b) of x's last axis by its angle φ:

        a' = a cos φ - b sin φ,    b' = b cos φ + a sin φ,

    with (a, b) = (x_i, x_{i+D/2}) for ``layout="half"`` — transformers'
    ``q * cos + rotate_half(q) * sin`` — and (x_{2i}, x_{2i+1}) for ``"interleaved"``.

    Parameters
    ----------
    x : ndarray (B, H, T, D), queries or keys, D even.
    cos, sin : ndarray (T, D/2) or (B, T, D/2), from :func:`rope_tables` (the same for every head).
    layout : {"half", "interleaved"}

    Returns
    -------
    y : ndarray (B, H, T, D)
    cache : (cos, sin, layout) for :func:`rope_backward`.

    Examples
    --------
    >>> x = np.array([[[[1.0, 0.0, 0.0, 1.0]]]])          # pairs (x0, x2) = (1, 0), (x1, x3) = (0, 1)
    >>> cos, sin = np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])   # pair 0 turns 90°, pair 1 0°
    >>> rope_forward(x, cos, sin)[0].tolist()
    [[[[0.0, 0.0, 1.0, 1.0]]]]
    >>> rope_forward(x, cos, sin, layout="interleaved")[0].tolist()    # pairs (x0, x1), (x2, x3)
    [[[[0.0, 1.0, 0.0, 1.0]]]]
    """
    cos, sin = _check_tables(x, cos, sin, layout)
    return _rotate(x, cos, sin, layout), (cos, sin, layout)


def rope_backward(dy, cache):
    """Gradient of the rotation.

    forward: each pair is multiplied by the rotation matrix R(φ) = [[cos φ, -sin φ],
    [sin φ, cos φ]]; R is orthogonal, so the gradient at the pair is R(φ)ᵀ dy = R(-φ) dy:
    da = da' cos φ + db' sin φ, db = db' cos φ - da' sin φ — the same rotation with sin negated.

    Parameters
    ----------
    dy : ndarray (B, H, T, D); cache : from :func:`rope_forward`.

    Returns
    -------
    dx : ndarray (B, H, T, D)

    Examples
    --------
    >>> x = np.array([[[[1.0, 2.0]]]])
    >>> y, cache = rope_forward(x, np.array([[0.6]]), np.array([[0.8]]))
    >>> rope_backward(y, cache).round(12).tolist()            # rotating back gives x
    [[[[1.0, 2.0]]]]
    """
    cos, sin, layout = cache
    return _rotate(dy, cos, -sin, layout)


def _check_tables(x, cos, sin, layout):
    """Validate the inputs of :func:`rope_forward`; return the tables shaped to broadcast
    against (B, H, T, D/2)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'half' or 'interleaved', got {layout!r}")
    if x.ndim != 4 or x.shape[-1] % 2:
        raise ValueError(f"x must be (B, H, T, D) with D even, got shape {x.shape}")
    B, _, T, D = x.shape
    if cos.shape != sin.shape or cos.shape not in ((T, D // 2), (B, T, D // 2)):
        raise ValueError(f"cos and sin must be ({T}, {D // 2}) or ({B}, {T}, {D // 2}) for x of shape "
                         f"{x.shape}, got {cos.shape} and {sin.shape}")
    if cos.ndim == 3:
        cos, sin = cos[:, None], sin[:, None]                         # (B, T, D/2) -> (B, 1, T, D/2)
    return cos, sin


def _rotate(x, cos, sin, layout):
    """(a, b) -> (a cos - b sin, b cos + a sin) for every pair of the layout."""
    if layout == "half":
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]                           # (..., D) -> 2 x (..., D/2)
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)    # -> (..., D)
    a, b = x[..., 0::2], x[..., 1::2]                                 # (..., D) -> 2 x (..., D/2)
    return np.stack([a * cos - b * sin, b * cos + a * sin], axis=-1).reshape(x.shape)  # -> (..., D/2, 2) -> (..., D)
