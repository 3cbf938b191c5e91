"""Input checks for the decoding code, kept out of the math.

Every decoding option has one rule here (:data:`RULES`), used both by the sampling transforms
(through the :func:`transform` decorator, which checks a transform's inputs before its body
runs) and by ``GenerationConfig``. Errors are ValueErrors naming the option and the value:
``top_p must be in (0, 1], got 1.5``.
"""

from __future__ import annotations

import functools
import inspect
import numbers

import numpy as np

from ._repr import short_repr
from .config import positive_int


#: the largest count or token id an option may hold: NumPy's int64 must hold it
INT64_MAX = 2 ** 63 - 1


def shown(value, limit=80) -> str:
    """``repr(value)`` for an error message, at most ``limit`` characters; an integer of more
    than 256 bits is described by its size (Python refuses to print one of over 4300 digits).

    >>> shown(2 ** 70), shown(10 ** 400), shown([10 ** 5000])
    ('1180591620717411303424', '<int of 1329 bits>', '[<int of 16610 bits>]')
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        bits = int(value).bit_length()
        if bits > 256:
            return f"<int of {bits} bits>"
    if isinstance(value, (list, tuple, dict)):          # (its ints may be huge too)
        return short_repr(_plain(value), limit)
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _plain(value, depth=2):
    """NumPy scalars in a list, tuple or dict (two levels deep: the options' nesting) as
    Python's, which :func:`npgpt.io.errors.short_repr` shows by value."""
    if isinstance(value, np.generic):
        return value.item()
    if depth == 0:
        return value
    if isinstance(value, dict):
        return {_plain(k, depth - 1): _plain(v, depth - 1) for k, v in list(value.items())[:20]}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, depth - 1) for v in value[:20])
    return value


def at_most_int64(value: int, name) -> int:
    """``value`` (an int) unless NumPy's int64 cannot hold it: a ValueError naming it then.

    >>> at_most_int64(2 ** 70, "max_new_tokens")
    Traceback (most recent call last):
    ...
    ValueError: max_new_tokens must be at most 2**63 - 1, got 1180591620717411303424
    """
    if value > INT64_MAX:
        raise ValueError(f"{name} must be at most 2**63 - 1, got {shown(value)}")
    return value


def real(value, name, low=None, high=None, low_open=False, high_open=False) -> float:
    """``value`` as a float if it is a finite real number within the bounds, else ValueError.

    Examples
    --------
    >>> real(0.5, "top_p", 0.0, 1.0, low_open=True)
    0.5
    >>> real(1.5, "top_p", 0.0, 1.0, low_open=True)
    Traceback (most recent call last):
    ...
    ValueError: top_p must be in (0, 1], got 1.5
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {shown(value)}")
    try:
        value = float(value)
    except OverflowError:                     # an int beyond float64 (10 ** 400)
        raise ValueError(f"{name} must be finite, got {shown(value)}") from None
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        raise ValueError(f"{name} must be in {left}{lo}, {hi}{right}, got {value}")
    return value


def _interval(name, low=None, high=None, low_open=False, high_open=False):
    return lambda value: real(value, name, low, high, low_open, high_open)


# ------------------- GenerationConfig's other rules: flags, counts, token ids, strings, seeds
# (the ids' range [0, V) is checked where V is known: ``npgpt.processors.token_mask``)
def boolean(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def count(value, name, low):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < low:
        kind = "a positive" if low == 1 else "a non-negative"
        raise ValueError(f"{name} must be {kind} integer, got {shown(value)}")
    return at_most_int64(int(value), name)


def token_ids(value, name, single=False):
    """None, an int or (unless ``single``) a list of ints >= 0 -> None, int or tuple of ints."""
    if value is None:
        return None
    one = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if single and not one:
        raise ValueError(f"{name} must be an int, got {shown(value)}")
    try:
        items = [value] if one else list(value)
    except TypeError:
        raise ValueError(f"{name} must be an int or a list of ints, got {shown(value)}") from None
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            raise ValueError(f"{name} must be an int or a list of ints, got {shown(value)}")
        if not 0 <= item <= INT64_MAX:
            raise ValueError(f"{name} {shown(int(item))} is out of range: token ids are >= 0 "
                             f"and below 2**63")
    if not items:
        raise ValueError(f"{name} is an empty list")
    return int(items[0]) if one else tuple(int(i) for i in items)


def token_id_list(value, name):
    """None or ids (int or list) -> None or a tuple of ints >= 0."""
    ids = token_ids(value, name)
    return None if ids is None else ((ids,) if isinstance(ids, int) else ids)


def token_sequences(value, name):
    """None or a list of non-empty lists of token ids -> None or a tuple of tuples."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a list of lists of token ids, got {shown(value)}")
    out = []
    for i, seq in enumerate(value):
        if seq is None or isinstance(seq, (str, bytes)):
            raise ValueError(f"{name}[{i}] must be a token id or a list of them, got {shown(seq)}")
        out.append(token_id_list(list(seq) if hasattr(seq, "__iter__") else seq, name))
    if not out:
        raise ValueError(f"{name} is an empty list")
    return tuple(out)


def bias_dict(value):
    """None or {token id: finite bias} -> None or a dict of int -> float."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"logit_bias must be a dict {{token id: bias}}, got {shown(value)}")
    out = {}
    for token, bias in value.items():
        token = token_ids(token, "a logit_bias token id", single=True)
        out[token] = _finite(bias, f"logit_bias[{token}]")
    return out


def _finite(value, name):
    try:
        return real(value, name)
    except ValueError:
        raise ValueError(f"{name} must be a finite number, got {shown(value)}") from None


def strings(value, name):
    """None, a str or a list of non-empty str -> None or a tuple of str."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value) if hasattr(value, "__iter__") else None
    if not items or not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"{name} must be a non-empty string or a list of them, got {shown(value)}")
    for item in items:                   # matched as UTF-8: a lone surrogate has no bytes
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"{name}: {shown(item)} contains a lone surrogate "
                             f"U+{ord(err.object[err.start]):04X} at position {err.start}; such a "
                             f"string has no UTF-8 form, so it cannot be matched (an undecodable "
                             f"byte of the command line becomes one)") from None
    return tuple(items)


def check_seed(seed):
    if not (seed is None or isinstance(seed, np.random.Generator) or (
            isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)) and seed >= 0)):
        raise ValueError(f"seed must be None, a non-negative int or a numpy Generator, got {shown(seed)}")


#: option name -> the check of a value that is in use (returns the value as the code uses it)
RULES = {
    "temperature": _interval("temperature", 0.0),
    "top_k": lambda k: at_most_int64(positive_int(k, "top_k"), "top_k"),
    "top_p": _interval("top_p", 0.0, 1.0, low_open=True),
    "min_p": _interval("min_p", 0.0, 1.0),
    "typical_p": _interval("typical_p", 0.0, 1.0, low_open=True),
    "epsilon_cutoff": _interval("epsilon_cutoff", 0.0, 1.0, low_open=True, high_open=True),
    "eta_cutoff": _interval("eta_cutoff", 0.0, 1.0, low_open=True, high_open=True),
    "repetition_penalty": _interval("repetition_penalty", 0.0, low_open=True),
    "presence_penalty": _interval("presence_penalty"),
    "frequency_penalty": _interval("frequency_penalty"),
    "no_repeat_ngram_size": lambda n: at_most_int64(positive_int(n, "no_repeat_ngram_size"),
                                                    "no_repeat_ngram_size"),
    "min_tokens_to_keep": lambda n: at_most_int64(positive_int(n, "min_tokens_to_keep"),
                                                  "min_tokens_to_keep"),
    "length_penalty": _interval("length_penalty"),
    "logit_bias": bias_dict,
    "bad_words_ids": lambda words: token_sequences(words, "bad_words_ids"),
    "suppress_tokens": lambda ids: token_id_list(ids, "suppress_tokens"),
    "forced_eos_token_id": lambda ids: token_ids(ids, "forced_eos_token_id"),
}
#: options that may also be switched off: the values that mean "off"
OFF = {"top_k": (None, 0), "top_p": (None,), "min_p": (None,), "typical_p": (None,),
       "epsilon_cutoff": (None, 0), "eta_cutoff": (None, 0), "no_repeat_ngram_size": (0,),
       "logit_bias": (None,), "bad_words_ids": (None,), "suppress_tokens": (None,)}


def check_option(name, value):
    """Check a decoding option's value (its "off" values pass as they are).

    Examples
    --------
    >>> check_option("top_k", None), check_option("top_k", 50)
    (None, 50)
    >>> check_option("top_k", -3)
    Traceback (most recent call last):
    ...
    ValueError: top_k must be a positive integer, got -3 (None or 0 switches it off)
    """
    offs = OFF.get(name, ())
    if any(value is off or (off is not None and _is_number(value) and value == off) for off in offs):
        return value
    try:
        return RULES[name](value)
    except ValueError as err:
        if 0 not in offs:              # the rule says "positive" but 0 is allowed: say why
            raise
        raise ValueError(f"{err} ({' or '.join(map(str, offs))} switches it off)") from None


def _is_number(value):
    return isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_))


def as_logits(logits, name="logits"):
    """Return (x, row_max): x a float array (..., V), row_max (..., 1). Raise on NaN, +inf,
    or a row that is all -inf (no token possible).

    Examples
    --------
    >>> as_logits([1, 2])[0]
    array([1., 2.])
    >>> as_logits([0.0, float("nan")])
    Traceback (most recent call last):
    ...
    ValueError: logits contain NaN
    """
    x = np.asarray(logits)
    if x.dtype.kind != "f":
        if x.dtype.kind not in "iub":
            raise ValueError(f"{name} must be a real array, got dtype {x.dtype}")
        x = x.astype(np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., V) with V >= 1, got shape {x.shape}")
    row_max = x.max(axis=-1, keepdims=True)            # NaN propagates through max
    if np.isnan(row_max).any():
        raise ValueError(f"{name} contain NaN")
    if np.isposinf(row_max).any():
        raise ValueError(f"{name} contain +inf")
    if np.isneginf(row_max).any():
        row = np.argwhere(np.isneginf(row_max[..., 0]))[0]
        raise ValueError(f"{name} row {tuple(int(i) for i in row)} is all -inf: no token is possible")
    return x, row_max


def as_history(ids, batch_shape, V):
    """Validate token histories ids (..., T) or (T,) against the logits' batch shape; return
    them as int64 (..., T) (a (T,) history is shared by every row).

    Examples
    --------
    >>> as_history([0, 2], (2,), 3).tolist()
    [[0, 2], [0, 2]]
    """
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu" or arr.dtype == bool:
        if arr.size == 0:
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"ids must have shape (T,) or (..., T), got a scalar {arr!r}")
    if arr.ndim == 1:
        arr = np.broadcast_to(arr, tuple(batch_shape) + arr.shape)
    if arr.shape[:-1] != tuple(batch_shape):
        raise ValueError(f"ids shape {arr.shape} does not match the logits' batch shape {tuple(batch_shape)}")
    bad = arr[(arr < 0) | (arr >= V)]
    if bad.size:
        raise ValueError(f"ids out of range [0, {V}): {int(bad.flat[0])}")
    return arr.astype(np.int64, copy=False)


def transform(fast=None, **option_of):
    """Decorate a logits transform ``rule(logits, [ids,] param, ...)`` with its input checks.

    Before the rule runs, its first argument (the logits) is checked by :func:`as_logits`
    (along ``axis`` if the rule has that parameter), ``ids`` by :func:`as_history`, and
    every parameter by its rule in :data:`RULES` (the parameter's option name is
    ``option_of[param]``, or the parameter's own name). ``fast``, if given, is a faster form
    of the same rule, called with the same arguments plus ``row_max`` (the row maxima the
    check found); it returns None when its algorithm does not pay for this input, and the
    plain rule runs then. The plain rule stays reachable as ``decorated.__wrapped__``.

    ``check=False`` skips the checks (``generate``'s loops, whose logits and options were
    checked once per call): the arguments must then be what the checks would return (float
    logits without NaN, +inf or all -inf rows; options as a GenerationConfig holds them).

    Examples
    --------
    >>> @transform(t="temperature")
    ... def scale(logits, t):
    ...     return logits / t
    >>> scale([1.0, 2.0], -1)
    Traceback (most recent call last):
    ...
    ValueError: temperature must be in [0, inf), got -1.0
    """
    def decorate(rule):
        names = list(inspect.signature(rule).parameters)
        first = names[0]

        @functools.wraps(rule)
        def checked(*args, check=True, **kwargs):
            values = dict(zip(names, args), **kwargs)
            if first not in values or len(args) > len(names):
                return rule(*args, **kwargs)          # Python's own TypeError
            if not check:
                row_max = None if fast is None else values[first].max(axis=-1, keepdims=True)
            else:
                x, row_max = _checked_logits(values[first], values.get("axis", -1))
                values[first] = x
                if "ids" in values:
                    values["ids"] = as_history(values["ids"], x.shape[:-1], x.shape[-1])
                for param, value in values.items():
                    option = option_of.get(param, param)
                    if option in RULES:
                        values[param] = RULES[option](value)
            out = None if fast is None else fast(row_max=row_max, **values)
            return rule(**values) if out is None else out
        return checked
    return decorate


def _checked_logits(logits, axis):
    """as_logits along ``axis``: the array back in its own layout, and the row maxima."""
    if axis == -1:
        return as_logits(logits)
    x, row_max = as_logits(np.moveaxis(np.asarray(logits), axis, -1))
    return np.moveaxis(x, -1, axis), row_max
