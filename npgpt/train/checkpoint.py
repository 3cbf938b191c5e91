"""Training checkpoints: the whole :class:`~npgpt.train.state.TrainState` in one .npz (JSON
metadata, then ``param/``, ``m/`` and ``v/`` arrays; never a pickle), written atomically and read
back only after every entry is checked, so that a resumed run is bit-identical."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import zipfile
import zlib

import numpy as np

from ..config import GPTConfig
from ..model import GPT
from ..nn.layers import TOKEN_TABLE
from ..params import block_parameter_shapes, parameter_shapes
from .config import TrainConfig
from .errors import TrainingError
from .optim import AdamW
from .state import TrainState

CHECKPOINT_FORMAT = "npgpt-train-1"


def _atomic_savez(path: str, arrays: dict) -> None:
    """np.savez through a temporary beside ``path`` (mode 0o666 less the umask, like any new
    file), flushed to disk, then renamed over ``path``."""
    from ..io import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def require_finite(state: "TrainState") -> None:
    """A TrainingError unless every parameter and both AdamW moments are finite.

    Examples
    --------
    >>> state = TrainState.new(GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0), TrainConfig())
    >>> require_finite(state)                          # a fresh state: finite
    >>> state.optimizer.v["token_embedding.weight"][0, 0] = np.inf
    >>> require_finite(state)
    Traceback (most recent call last):
        ...
    npgpt.train.errors.TrainingError: at step 0 the AdamW moment v of 'token_embedding.weight' is not finite: the run diverged; a non-finite state is never saved
    """
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
    require_finite(state)
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
    >>> from npgpt.train import get_batch, train_step
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
    dtype = arrays["param/" + TOKEN_TABLE].dtype
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
    model = GPT(config, dtype=arrays["param/" + TOKEN_TABLE].dtype)
    model.load_state_dict({k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")})
    if meta["tokenizer"] is not None:
        from ..tokenizers import tokenizer_from_dict
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


def checkpoint_meta(path: str):
    """The metadata dict of the training checkpoint ``path`` (only that entry is read), or
    None when it is not one that can be read.

    Examples
    --------
    >>> save_checkpoint("ckpt.npz", TrainState.new(GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0), TrainConfig(steps=400)))
    >>> meta = checkpoint_meta("ckpt.npz")
    >>> meta["format"], meta["step"], meta["train_config"]["steps"]
    ('npgpt-train-1', 0, 400)
    >>> checkpoint_meta("absent.npz") is None
    True
    """
    from ..io.files import open_regular

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
