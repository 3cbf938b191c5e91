"""Checkpoints: npgpt's own safetensors files, PyTorch state_dicts, Hugging Face GPT-2 and
Llama / Qwen2 / Mistral folders.

Shapes: parameters are keyed and shaped like the seed's PyTorch ``GPTModel.state_dict()``
(see :func:`npgpt.model.parameter_shapes`): V = vocab_size, C = d_model, F = 4 C.

``load(path, **config_overrides)`` recognises the format from the content, never the name:

==============================  =================================================
what ``path`` is                how it is read
==============================  =================================================
a folder with ``config.json``   Hugging Face GPT-2: ``model.safetensors`` or
                                ``pytorch_model.bin`` (+ vocab.json/merges.txt)
... whose ``architectures`` is   Hugging Face Llama-family (:mod:`npgpt.io.llama`):
Llama/Qwen2/MistralForCausalLM  ``model.safetensors``, shards listed in
                                ``model.safetensors.index.json``, or
                                ``pytorch_model.bin`` (+ tokenizer.json)
a folder with                   a training folder (``npgpt train --out``):
``model.safetensors`` only      that file, npgpt's own
a zip file (starts ``PK``)      ``torch.save(state_dict)``: restricted unpickler
a GGUF file (starts ``GGUF``)   llama.cpp's (:mod:`npgpt.io.gguf`): llama, qwen2,
                                gpt2; F32 ... Q8_0 and the K-quants, memory-mapped
a safetensors file              npgpt's own (``"format": "npgpt"`` metadata), else
                                a state_dict with seed or GPT-2 names
a bare name (no such path)      a bundled model, ``npgpt/data/<name>.safetensors``
==============================  =================================================

Nothing in a file is ever executed, and no file needs torch: every malformed input raises
:class:`CheckpointError` (a ``ValueError``) saying what is wrong, with every value it
shows cut short (:func:`short_repr`), and memory bounded by a few times the file's size.
Only regular files are read: a FIFO or a device is refused, never waited on.

Writes are atomic (:mod:`npgpt.io.files`): a file through a temporary beside it and a
rename (:func:`atomic_write`), a GPT-2 folder through a whole new folder swapped in; the
temporaries of a killed writer are removed by the next write into the same folder
(:func:`clean_stale_temporaries`).
"""

from __future__ import annotations

import json
import os
import re
import stat
import warnings

import numpy as np

from . import gpt2 as _gpt2
from . import llama as _llama
from .errors import CheckpointError, reject_repeated_keys, short_repr
from .files import (atomic_folder, atomic_write, clean_stale_temporaries, kind_of,
                    open_regular)
from .safetensors import read_safetensors, write_safetensors
from .torch_pickle import read_torch_zip
from .gguf import load_gguf, read_gguf, read_gguf_metadata, save_gguf

__all__ = ["CheckpointError", "load", "save_npgpt", "save_gpt2", "save_hf", "read_safetensors",
           "write_safetensors", "read_torch_zip", "bundled_models", "DATA_DIR",
           "atomic_write", "clean_stale_temporaries", "short_repr", "load_gguf", "read_gguf",
           "read_gguf_metadata", "save_gguf"]

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
FORMAT_NAME = "npgpt"
_SHAPE_FIELDS = ("vocab_size", "context_length", "d_model", "num_layers",
                 "tie_embeddings", "output_bias")
_UNKNOWABLE = ("num_heads", "residual", "gelu")      # what a state_dict's shapes cannot tell
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_INT_FIELDS = ("vocab_size", "context_length", "d_model", "num_heads", "num_layers")
_GPT2_FILES = frozenset(["config.json", "model.safetensors", "vocab.json", "merges.txt"])
_HF_FILES = frozenset(["config.json", "model.safetensors", "model.safetensors.index.json"])
_SHARD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
_FOLDER_READS = 3         # tries at reading a folder that another process keeps replacing
_MAX_MESSAGE = 600        # characters of a model-side message quoted in a CheckpointError


# --------------------------------------------------------------------------- helpers
def bundled_models() -> list:
    """Names accepted by ``load(name)``: the ``*.safetensors`` files in ``npgpt/data``.

    Examples
    --------
    >>> bundled_models()
    ['shakespeare-char', 'shakespeare-char-draft']
    """
    try:
        files = os.listdir(DATA_DIR)
    except OSError:
        return []
    return sorted(f[:-len(".safetensors")] for f in files if f.endswith(".safetensors"))


def _config_fields():
    import dataclasses
    from ..config import GPTConfig
    return {f.name for f in dataclasses.fields(GPTConfig)}


def _field_problem(name: str, value):
    """Why ``value`` cannot be the GPTConfig field ``name`` (a short phrase), or None.

    Checked before GPTConfig sees the value, with exact comparisons only: an integer too
    large for a float, a float or a bool where an integer belongs, a size no model has.
    """
    from ..config import GELU_KINDS, RESIDUAL_KINDS
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if name in _INT_FIELDS:
        if not number or not isinstance(value, int) or value <= 0:
            return "must be a positive integer"
        if value > _gpt2.MAX_DIMENSION:
            return f"is larger than any model (at most {_gpt2.MAX_DIMENSION})"
    elif name == "dropout" and not (number and 0 <= value < 1):
        return "must be a number in [0, 1)"
    elif name == "layer_norm_eps" and not (number and 0 < value < 1):
        return "must be a number in (0, 1)"
    elif name in ("gelu", "residual"):
        kinds = GELU_KINDS if name == "gelu" else RESIDUAL_KINDS
        if not isinstance(value, str) or value not in kinds:
            return f"must be one of {kinds}"
    elif name in ("tie_embeddings", "output_bias", "attention_bias") and not isinstance(value, bool):
        return "must be True or False"
    elif name in ("num_kv_heads", "head_dim", "ffn_dim") and value is not None:
        if not number or not isinstance(value, int) or value <= 0:
            return "must be a positive integer or null"
        if value > _gpt2.MAX_DIMENSION:
            return f"is larger than any model (at most {_gpt2.MAX_DIMENSION})"
    elif name in ("norm", "positions", "mlp", "rope_layout") and not isinstance(value, str):
        return "must be a string"
    elif name == "rope_theta" and not (number and 0 < value < 1e300):
        return "must be a positive number"
    elif name == "rope_scaling" and value is not None and not isinstance(value, dict):
        return "must be an object or null"
    return None


def _checked_config(fields: dict, source: str, what: str = "invalid config"):
    """GPTConfig from ``fields`` read from a file, or a CheckpointError naming the field.

    Every value is checked before GPTConfig sees it, so each message is short and no
    value of the wrong kind reaches arithmetic (``float(10**400)`` raises OverflowError).
    """
    from ..config import GPTConfig
    unknown = sorted(str(name) for name in set(fields) - _config_fields())
    if unknown:
        raise CheckpointError(f"{source}: {what}: unknown GPTConfig field(s) "
                              f"{short_repr(unknown, 200)}")
    for name, value in fields.items():
        problem = _field_problem(name, value)
        if problem:
            raise CheckpointError(f"{source}: {what}: {name} {problem}, got "
                                  f"{short_repr(value)}")
    try:
        return GPTConfig.from_dict(fields)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: {what}: {exc}") from None


def _make_config(fields: dict, overrides: dict, source: str, inferred=()):
    """GPTConfig from ``fields`` updated by ``overrides``.

    Overrides of ``inferred`` fields (read from the weights) must agree with them.
    """
    unknown = sorted(set(overrides) - _config_fields())
    if unknown:
        raise ValueError(f"unknown config override(s): {', '.join(unknown)}; "
                         f"valid: {', '.join(sorted(_config_fields()))}")
    for name in inferred:
        if name in overrides and name in fields and overrides[name] != fields[name]:
            raise CheckpointError(f"{source}: override {name}={short_repr(overrides[name])} "
                                  f"contradicts the weights, which say "
                                  f"{name}={short_repr(fields[name])}")
    merged = {**fields, **overrides}
    missing = [n for n in _UNKNOWABLE if n not in merged]
    if missing:
        example = ", ".join(f"{n}=..." for n in missing)
        raise CheckpointError(
            f"{source}: a state_dict's shapes cannot tell {', '.join(missing)}; pass "
            f"them: npgpt.load(path, {example}) (the seed's GPTModel uses "
            f"residual='seed', gelu='exact')")
    return _checked_config(merged, source)


def _model_dtype(tensors: dict, source: str):
    """float64 if every floating tensor is float64, else float32."""
    kinds = {np.dtype(v.dtype) for v in tensors.values()}
    if kinds and all(k == np.float64 for k in kinds):
        return np.float64
    return np.float32


def _build_model(config, state: dict, dtype, source: str):
    """A GPT with ``config`` holding ``state``, without spending time on a random init."""
    from ..config import GPTConfig
    from ..model import GPT, block_parameter_shapes
    per_block = len(block_parameter_shapes(config, 0))
    if per_block * config.num_layers > len(state):    # before parameter_shapes builds a huge dict
        raise CheckpointError(f"{source}: the config has {config.num_layers} layers but the "
                              f"file holds only {len(state)} tensors")
    stub = GPTConfig(vocab_size=1, context_length=1, d_model=1, num_heads=1, num_layers=1)
    model = GPT(stub, dtype=dtype)          # a few numbers; replaced wholesale below
    model.config = config
    try:
        model.load_state_dict(state)
    except ValueError as exc:             # its message lists names read from the file: cut it
        raise CheckpointError(f"{source}: the tensors do not fit the config: "
                              f"{_cut(str(exc))}") from None
    return model


def _cut(text: str, limit: int = _MAX_MESSAGE) -> str:
    """``text``, cut to ``limit`` characters with ``...`` when longer."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _infer_seed_fields(state: dict, source: str) -> dict:
    """GPTConfig fields readable from the shapes of a seed-named state_dict."""
    def shape(name, ndim):
        if name not in state:
            raise CheckpointError(f"{source}: missing tensor {short_repr(name)}")
        value = state[name]
        if value.ndim != ndim or 0 in value.shape:
            raise CheckpointError(f"{source}: {name} has shape {value.shape}, expected "
                                  f"{ndim} non-empty dimension(s)")
        return value.shape
    V, C = shape("token_embedding.weight", 2)
    ctx, C2 = shape("position_encoding.weight", 2)
    if C2 != C:
        raise CheckpointError(f"{source}: position_encoding.weight has width {C2}, "
                              f"token_embedding.weight {C}")
    layers = 0
    while f"blocks.{layers}.ln1.weight" in state:
        layers += 1
    if layers == 0:
        raise CheckpointError(f"{source}: no transformer blocks (blocks.0.ln1.weight missing)")
    return dict(vocab_size=int(V), d_model=int(C), context_length=int(ctx), num_layers=layers,
                tie_embeddings="output_layer.weight" not in state,
                output_bias="output_layer.bias" in state, layer_norm_eps=1e-5, dropout=0.0)


def _model_from_state_dict(state: dict, overrides: dict, source: str):
    """A model from a bare state_dict (seed or GPT-2 names), config from shapes + overrides."""
    non_float = [k for k, v in state.items() if v.dtype.kind != "f"
                 and not k.endswith((".causal_mask", "attn.bias", "attn.masked_bias"))]
    if non_float:
        shown = ", ".join(_cut(name, 80) for name in non_float[:5])
        raise CheckpointError(f"{source}: non-floating tensors {shown}")
    if _gpt2.is_gpt2_state_dict(state):
        state = _gpt2.state_dict_from_hf(state)
        fields = _infer_seed_fields(state, source)
        fields.update(residual="pre_norm", gelu="tanh", output_bias=False)
        lm_head, wte = state.get("output_layer.weight"), state["token_embedding.weight"]
        if lm_head is not None and lm_head.shape == wte.shape and np.array_equal(lm_head, wte):
            fields["tie_embeddings"] = True       # GPT-2's lm_head is wte, saved twice
        inferred = _SHAPE_FIELDS
    else:
        fields = _infer_seed_fields(state, source)
        inferred = _SHAPE_FIELDS
    config = _make_config(fields, overrides, source, inferred)
    floats = {k: v for k, v in state.items() if v.dtype.kind == "f"}
    return _build_model(config, state, _model_dtype(floats, source), source)


def _attach_tokenizer_from_dict(model, text: str, source: str) -> None:
    try:
        from ..tokenizers import tokenizer_from_dict
    except ImportError:
        warnings.warn(f"{source}: the file has a tokenizer but npgpt.tokenizers is not "
                      f"available; model.tokenizer stays None", stacklevel=3)
        return
    try:
        data = json.loads(text, object_pairs_hook=reject_repeated_keys)
        tokenizer = tokenizer_from_dict(data)
    except Exception as exc:   # the tokenizer JSON is untrusted input: any failure is a bad file
        raise CheckpointError(f"{source}: the tokenizer in the metadata is invalid: "
                              f"{type(exc).__name__}: {_cut(str(exc), 400)}") from None
    model.tokenizer = _fitting_tokenizer(tokenizer, model.config, source)


def _fitting_tokenizer(tokenizer, config, source: str):
    """``tokenizer``, if its ids all index the model's embedding table."""
    size = getattr(tokenizer, "vocab_size", None)
    if isinstance(size, int) and size > config.vocab_size:
        raise CheckpointError(f"{source}: the tokenizer has ids up to {size - 1} but the model's "
                              f"vocab_size is {config.vocab_size}: ids from "
                              f"{config.vocab_size} on would index past the embedding table")
    return tokenizer


# --------------------------------------------------------------------------- loaders
def _load_safetensors_file(path, overrides: dict):
    source = os.fspath(path)
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT_NAME:
        return _model_from_state_dict(tensors, overrides, source)
    if "config" not in metadata:
        raise CheckpointError(f"{source}: npgpt file without a 'config' in its metadata")
    try:
        fields = json.loads(metadata["config"], object_pairs_hook=reject_repeated_keys)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{source}: invalid config in the metadata: {exc}") from None
    if not isinstance(fields, dict):
        raise CheckpointError(f"{source}: invalid config in the metadata: not a JSON object")
    config = _checked_config(fields, source, "invalid config in the metadata")
    if overrides:
        config = _make_config(config.to_dict(), overrides, source, _SHAPE_FIELDS)
    kinds = {np.dtype(v.dtype) for v in tensors.values()}
    floats = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}
    if len(kinds) > 1 or not kinds <= floats:
        raise CheckpointError(f"{source}: an npgpt file holds only F16, only F32 or only F64 "
                              f"tensors, found {', '.join(sorted(k.name for k in kinds))}")
    dtype = kinds.pop() if kinds else np.dtype(np.float32)
    model = _build_model(config, tensors, np.float64 if dtype == np.float64 else np.float32, source)
    if "tokenizer" in metadata:
        _attach_tokenizer_from_dict(model, metadata["tokenizer"], source)
    return model


def _load_gpt2_folder(folder, overrides: dict):
    source = os.fspath(folder)
    hf = _gpt2.read_config_json(os.path.join(folder, "config.json"))
    fields = _gpt2.config_fields_from_hf(hf)
    model = _model_from_hf(_gpt2.state_dict_from_hf(_read_hf_tensors(folder, source)), fields,
                           overrides, source)
    vocab, merges = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    if os.path.exists(vocab) and os.path.exists(merges):
        try:
            from ..tokenizers import BPETokenizer
            from_gpt2 = BPETokenizer.from_gpt2
        except (ImportError, AttributeError):
            return model                       # tokenizers not available yet: weights only
        try:
            tokenizer = from_gpt2(vocab, merges)
        except Exception as exc:   # untrusted vocab/merges: any failure is a bad folder
            raise CheckpointError(f"{source}: vocab.json/merges.txt are invalid: "
                                  f"{type(exc).__name__}: {_cut(str(exc), 400)}") from None
        model.tokenizer = _fitting_tokenizer(tokenizer, model.config, f"{source}: vocab.json")
    return model


def _model_from_hf(state: dict, fields: dict, overrides: dict, source: str):
    """The model of a Hugging Face folder: its config fields (with ``overrides``) and its
    tensors renamed to npgpt's names."""
    non_float = [k for k, v in state.items() if v.dtype.kind != "f"]
    if non_float:
        raise CheckpointError(f"{source}: non-floating tensors {short_repr(non_float[:5])}")
    if not fields["tie_embeddings"] and "output_layer.weight" not in state:
        raise CheckpointError(f"{source}: tie_word_embeddings is false but lm_head.weight "
                              f"is missing")
    config = _make_config(fields, overrides, source, _SHAPE_FIELDS)
    return _build_model(config, state, _model_dtype(state, source), source)


def _read_hf_tensors(folder, source: str) -> dict:
    """Every tensor of a Hugging Face folder: ``model.safetensors``, the shards that
    ``model.safetensors.index.json`` lists (its ``weight_map``: tensor name -> shard file in
    the same folder), or ``pytorch_model.bin``."""
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(single):            # a FIFO too: read_safetensors refuses it, unblocked
        return read_safetensors(single)[0]
    if os.path.exists(index):
        weight_map = _gpt2.read_config_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{source}: model.safetensors.index.json needs a non-empty "
                                  f"weight_map object, got {short_repr(weight_map)}")
        shards = {}
        for name, shard in weight_map.items():
            if not isinstance(shard, str) or not _SHARD_RE.match(shard) or ".." in shard:
                raise CheckpointError(f"{source}: weight_map: {short_repr(name)} names the shard "
                                      f"{short_repr(shard)}, not a file name in the folder")
            shards.setdefault(shard, []).append(name)
        tensors = {}
        for shard, names in shards.items():
            path = os.path.join(folder, shard)
            if not os.path.exists(path):
                raise CheckpointError(f"{source}: missing shard {short_repr(shard)} (weight_map "
                                      f"lists {len(names)} tensor(s) in it)")
            found = read_safetensors(path)[0]
            absent = [n for n in names if n not in found]
            if absent:
                raise CheckpointError(f"{source}: shard {short_repr(shard)} lacks "
                                      f"{short_repr(absent[:5])}, which weight_map puts there")
            repeated = [n for n in found if n in tensors]
            if repeated:
                raise CheckpointError(f"{source}: tensor {short_repr(repeated[0])} is in two shards")
            tensors.update(found)
        return tensors
    if os.path.exists(os.path.join(folder, "pytorch_model.bin")):
        return read_torch_zip(os.path.join(folder, "pytorch_model.bin"))
    raise CheckpointError(f"{source}: no model.safetensors, model.safetensors.index.json or "
                          f"pytorch_model.bin")


def _load_llama_folder(folder, hf: dict, overrides: dict):
    """A Hugging Face Llama / Qwen2 / Mistral folder (:mod:`npgpt.io.llama`)."""
    source = os.fspath(folder)
    fields = _llama.config_fields_from_hf(hf)
    model = _model_from_hf(_llama.state_dict_from_hf(_read_hf_tensors(folder, source)), fields,
                           overrides, source)
    path = os.path.join(folder, "tokenizer.json")
    if os.path.exists(path):
        from ..tokenizers.hf import load_tokenizer_json
        try:
            tokenizer = load_tokenizer_json(path)
        except Exception as exc:   # untrusted tokenizer.json: any failure is a bad folder
            raise CheckpointError(f"{source}: tokenizer.json is invalid: {type(exc).__name__}: "
                                  f"{_cut(str(exc), 400)}") from None
        model.tokenizer = _fitting_tokenizer(tokenizer, model.config, f"{source}: tokenizer.json")
    return model


def _identity(folder):
    """(device, inode) of ``folder``, which a swap by save_gpt2 changes; None if gone."""
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return info.st_dev, info.st_ino


_GPT2_ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")


def _family_of(hf: dict, folder) -> str:
    """"gpt2" or "llama" (Llama, Qwen2, Mistral), by ``architectures`` when the config names
    one, else by ``model_type`` (GPT-2 when it has neither); any other architecture is a
    CheckpointError naming it and the ones npgpt reads."""
    arch = hf.get("architectures")
    names = [a for a in arch if isinstance(a, str)] if isinstance(arch, list) else []
    if any(a in _GPT2_ARCHITECTURES for a in names):
        return "gpt2"
    if any(a in _llama.ARCHITECTURES for a in names) or (
            not names and hf.get("model_type") in _llama.ARCHITECTURES.values()):
        return "llama"
    if names or arch is not None:
        supported = sorted((*_GPT2_ARCHITECTURES[:1], *_llama.ARCHITECTURES))
        raise CheckpointError(f"{os.fspath(folder)}: config.json: architectures "
                              f"{short_repr(arch)} is not supported; npgpt reads {supported}")
    return "gpt2"                     # no architectures: the GPT-2 reader checks model_type


def _read_folder(folder, overrides: dict):
    """A Hugging Face GPT-2 folder, or a training folder holding npgpt's model.safetensors."""
    if os.path.exists(os.path.join(folder, "config.json")):
        hf = _gpt2.read_config_json(os.path.join(folder, "config.json"))
        if _family_of(hf, folder) == "llama":
            return _load_llama_folder(folder, hf, overrides)
        return _load_gpt2_folder(folder, overrides)
    own = os.path.join(folder, "model.safetensors")
    if os.path.exists(own):
        return _load_safetensors_file(own, overrides)
    raise CheckpointError(f"{folder}: a folder without config.json or model.safetensors: a "
                          f"Hugging Face GPT-2 folder needs config.json and model.safetensors "
                          f"or pytorch_model.bin; a training folder (npgpt train --out) "
                          f"needs model.safetensors")


def _load_folder(folder, overrides: dict):
    """:func:`_read_folder`, again when the folder was swapped while being read.

    ``save_gpt2`` replaces a folder in one step, but a reader opens its files one by one:
    a swap in between could pair the old config with the new weights. The folder's inode
    tells: if it changed during the read, the read is repeated.
    """
    for attempt in range(_FOLDER_READS):
        last = attempt == _FOLDER_READS - 1
        before = _identity(folder)
        try:
            model = _read_folder(folder, overrides)
        except CheckpointError:
            if last or _identity(folder) == before:
                raise
            continue
        if last or _identity(folder) == before:
            return model


def _sniff(path) -> str:
    """'zip', 'safetensors', or raise CheckpointError naming what the file looks like."""
    with open_regular(path) as f:
        head = f.read(16)
        size = os.fstat(f.fileno()).st_size
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:4] == b"GGUF":
        return "gguf"
    if head.startswith(_LEGACY_TORCH_MAGIC):
        raise CheckpointError(f"{os.fspath(path)}: a legacy (PyTorch < 1.6) torch.save file; "
                              f"re-save it with a current PyTorch (zip format)")
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        raise CheckpointError(f"{os.fspath(path)}: a bare pickle, not a PyTorch zip or "
                              f"safetensors file; refusing to unpickle it")
    raise CheckpointError(f"{os.fspath(path)}: unrecognised format ({size} bytes, starting "
                          f"{head[:8]!r}): not safetensors, a PyTorch zip, or a GPT-2 folder")


def _load_bundled(name: str, overrides: dict):
    """The bundled model ``name``, or FileNotFoundError listing the bundled models."""
    names = bundled_models()
    if _NAME_RE.match(name) and "." not in name and name in names:
        return _load_safetensors_file(os.path.join(DATA_DIR, name + ".safetensors"), overrides)
    listing = ", ".join(names) if names else "none installed"
    raise FileNotFoundError(f"no file or folder {short_repr(name, 200)}, and no bundled model "
                            f"of that name (bundled models: {listing})")


def load(path, **config_overrides):
    """Load a model from a checkpoint; the format is recognised from the content.

    Parameters
    ----------
    path : str or os.PathLike
        npgpt's own safetensors file; a ``torch.save(model.state_dict())`` file of the seed's
        ``GPTModel``; a Hugging Face GPT-2 folder (``config.json`` + ``model.safetensors`` or
        ``pytorch_model.bin``); a training folder (``npgpt train --out run1``: its
        ``model.safetensors``); or the name of a bundled model (``"shakespeare-char"``).
    **config_overrides
        GPTConfig fields. A bare state_dict's shapes give vocab_size, d_model,
        context_length, num_layers, tie_embeddings and output_bias, but not ``num_heads``,
        ``residual`` or ``gelu``: pass those (``num_heads=4, residual="seed",
        gelu="exact"`` for the seed). Overriding an inferred field with another value is an
        error; ``layer_norm_eps`` (default 1e-5) and ``dropout`` may be set freely.

    Returns
    -------
    npgpt.GPT, float32 (float64 if every stored float tensor is float64), with
    ``model.tokenizer`` set when the checkpoint carries one.

    Raises
    ------
    CheckpointError
        Malformed, truncated, hostile or unsupported input, a tokenizer with ids past the
        model's vocabulary, a path that is a FIFO, a device or a socket (refused without
        reading it), or a missing override.
    FileNotFoundError
        ``path`` does not exist (and, for a bare name, no bundled model has that name).

    Examples
    --------
    >>> import npgpt
    >>> npgpt.load("shakespeare-char").tokenizer               # a bundled model, by name
    CharTokenizer(vocab_size=65)

    A Hugging Face GPT-2 folder (here a tiny one, written by :func:`save_gpt2`):

    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2,
    ...                       num_layers=1, gelu="tanh", tie_embeddings=True, output_bias=False)
    >>> save_gpt2(npgpt.GPT(cfg, seed=0), "tiny-gpt2")
    >>> npgpt.load("tiny-gpt2").config == cfg
    True

    A training folder (what ``npgpt train --out run1`` writes) loads its model.safetensors:

    >>> os.makedirs("run1")
    >>> npgpt.GPT(cfg, seed=0).save("run1/model.safetensors")
    >>> npgpt.load("run1").config == cfg
    True

    A ``torch.save(model.state_dict(), "seed.pt")`` file of the seed's ``GPTModel`` holds
    only tensors, so name what their shapes cannot tell:
    ``npgpt.load("seed.pt", num_heads=4, residual="seed", gelu="exact")``.
    """
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    try:
        mode = os.stat(path).st_mode          # never blocks, whatever the path is
    except (OSError, ValueError):
        return _load_bundled(path, config_overrides)
    if stat.S_ISDIR(mode):
        return _load_folder(path, config_overrides)
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path}: {kind_of(mode)}, not a checkpoint file or folder; "
                              f"refusing to read it")
    kind = _sniff(path)
    if kind == "zip":
        return _model_from_state_dict(read_torch_zip(path), config_overrides, path)
    if kind == "gguf":
        return load_gguf(path, **config_overrides)
    return _load_safetensors_file(path, config_overrides)


# --------------------------------------------------------------------------- savers
def save_npgpt(model, path, dtype=None) -> None:
    """Write npgpt's own file: safetensors with the config and tokenizer in the metadata.

    Keys and shapes are ``model.state_dict()``'s (the seed's PyTorch names), dtype F32 or
    F64 as the model's — or ``dtype=np.float16`` to store half the bytes (rounded to float16;
    ``load`` gives a float32 model back); ``__metadata__`` = {"format": "npgpt", "config": GPTConfig JSON,
    "tokenizer": ``json.dumps(model.tokenizer.to_dict())`` (when there is one),
    "npgpt_version": ...}. The file is written to a temporary file in the same folder and
    renamed, so a crash never leaves half a checkpoint. ``load(path)`` gives back the same
    parameters bit for bit.

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> save_npgpt(model, "m.safetensors")             # the same as model.save("m.safetensors")
    >>> read_safetensors("m.safetensors")[1]["format"]
    'npgpt'
    >>> back = npgpt.load("m.safetensors")
    >>> back.config == model.config, all(np.array_equal(back.params[k], v)
    ...                                  for k, v in model.params.items())
    (True, True)
    """
    from .. import __version__
    params = model.state_dict()
    if dtype is not None:
        if np.dtype(dtype) not in (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float16, float32 or float64, got {np.dtype(dtype).name}")
        params = {k: v.astype(dtype) for k, v in params.items()}
    metadata = {"format": FORMAT_NAME, "config": model.config.to_json(),
                "npgpt_version": __version__}
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        if not hasattr(tokenizer, "to_dict"):
            raise ValueError(f"model.tokenizer ({type(tokenizer).__name__}) has no to_dict(); "
                             f"it cannot be saved")
        metadata["tokenizer"] = json.dumps(tokenizer.to_dict(), ensure_ascii=False)
    write_safetensors(path, params, metadata)


def save_gpt2(model, folder) -> None:
    """Write a Hugging Face GPT-2 folder: ``config.json`` + ``model.safetensors`` (and
    ``vocab.json`` + ``merges.txt`` when the model carries a BPETokenizer).

    ``transformers.GPT2LMHeadModel.from_pretrained(folder)`` then computes the same logits.
    Only configs GPT-2 can express are accepted: ``residual="pre_norm"``, ``gelu="tanh"``,
    ``tie_embeddings=True``, ``output_bias=False``; anything else raises a ValueError naming
    the field. Conv1D weights are written transposed; ``lm_head`` is tied to ``wte``.

    The folder is replaced as a whole (:func:`npgpt.io.files.atomic_folder`): the new files
    are written to a temporary folder beside it, which is then swapped in, so a reader (or
    a crash) sees the old model or the new one, never new weights with an old config.
    On Linux the swap is one ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames, between
    which the folder is briefly absent. The four files above belong to the model and are
    replaced (an old vocab.json/merges.txt goes when the new model has no BPETokenizer);
    every other entry of an existing folder (a README.md, a pytorch_model.bin, a
    subfolder) is kept as it was.

    Examples
    --------
    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2,
    ...                       num_layers=1, gelu="tanh", tie_embeddings=True, output_bias=False)
    >>> save_gpt2(npgpt.GPT(cfg, seed=0), "tiny-gpt2")  # the same as model.save_gpt2("tiny-gpt2")
    >>> sorted(os.listdir("tiny-gpt2"))
    ['config.json', 'model.safetensors']
    >>> with open("tiny-gpt2/README.md", "w") as f:     # a file of the user's...
    ...     _ = f.write("my model")
    >>> save_gpt2(npgpt.GPT(cfg, seed=1), "tiny-gpt2")  # ...survives saving again
    >>> sorted(os.listdir("tiny-gpt2"))
    ['README.md', 'config.json', 'model.safetensors']
    >>> with open("tiny-gpt2/config.json") as f:
    ...     hf = json.load(f)
    >>> hf["model_type"], hf["n_embd"], hf["activation_function"]
    ('gpt2', 8, 'gelu_new')
    >>> save_gpt2(npgpt.GPT(cfg.replace(residual="seed"), seed=0), "seed-gpt2")
    Traceback (most recent call last):
        ...
    ValueError: GPT-2 cannot express residual='seed' (it needs residual='pre_norm'); save with model.save() instead

    With transformers installed, ``GPT2LMHeadModel.from_pretrained("tiny-gpt2")`` loads it.
    """
    cfg = model.config
    for field, wanted in (("residual", "pre_norm"), ("gelu", "tanh"),
                          ("tie_embeddings", True), ("output_bias", False)):
        if getattr(cfg, field) != wanted:
            raise ValueError(f"GPT-2 cannot express {field}={getattr(cfg, field)!r} "
                             f"(it needs {field}={wanted!r}); save with model.save() instead")
    dtype_name = np.dtype(model.dtype).name
    tensors = _gpt2.hf_state_dict(model.params, cfg.num_layers)
    text = json.dumps(_gpt2.hf_config(cfg, dtype_name), indent=2, sort_keys=True) + "\n"
    tokenizer = getattr(model, "tokenizer", None)

    def fill(tmp):
        write_safetensors(os.path.join(tmp, "model.safetensors"), tensors, {"format": "pt"})
        atomic_write(os.path.join(tmp, "config.json"), text.encode("utf-8"))
        if tokenizer is not None and hasattr(tokenizer, "save_gpt2"):     # a BPETokenizer
            tokenizer.save_gpt2(os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt"))
    atomic_folder(folder, fill, owned=_GPT2_FILES)


def save_hf(model, folder, architecture=None) -> None:
    """Write a Hugging Face Llama, Qwen2 or Mistral folder: ``config.json`` +
    ``model.safetensors``, which ``transformers.AutoModelForCausalLM.from_pretrained(folder)``
    and ``npgpt.load(folder)`` load back.

    ``architecture`` ("llama", "qwen2", "mistral"; None: Qwen2 when the model has q/k/v
    biases, else Llama) picks the class named in config.json.

    Only the Llama-family block can be written: ``norm="rmsnorm"``, ``positions="rope"``,
    ``mlp="swiglu"``, ``residual="pre_norm"``, ``output_bias=False``, ``rope_layout="half"``;
    anything else raises a ValueError naming the field. ``lm_head.weight`` is written only
    when the embeddings are untied; a tokenizer read from a ``tokenizer.json`` is written back
    as ``tokenizer.json``. The folder is replaced as a whole, as by :func:`save_gpt2`
    (other files in it are kept).

    Examples
    --------
    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2,
    ...                       num_layers=1, norm="rmsnorm", positions="rope", mlp="swiglu",
    ...                       output_bias=False, num_kv_heads=1, layer_norm_eps=1e-6)
    >>> model = npgpt.GPT(cfg, seed=0)
    >>> save_hf(model, "tiny-llama")                   # the same as model.save_hf("tiny-llama")
    >>> sorted(os.listdir("tiny-llama"))
    ['config.json', 'model.safetensors']
    >>> back = npgpt.load("tiny-llama")
    >>> back.config == cfg, np.array_equal(back([1, 2, 3]), model([1, 2, 3]))
    (True, True)
    >>> save_hf(npgpt.GPT(cfg.replace(norm="layernorm")), "other")
    Traceback (most recent call last):
        ...
    ValueError: a Llama folder cannot express norm='layernorm' (it needs norm='rmsnorm'); save with model.save() instead
    """
    cfg = model.config
    for field, wanted in (("norm", "rmsnorm"), ("positions", "rope"), ("mlp", "swiglu"),
                          ("residual", "pre_norm"), ("output_bias", False),
                          ("rope_layout", "half")):
        if getattr(cfg, field) != wanted:
            raise ValueError(f"a Llama folder cannot express {field}={getattr(cfg, field)!r} "
                             f"(it needs {field}={wanted!r}); save with model.save() instead")
    tensors = _llama.hf_state_dict(model.params, cfg.num_layers)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    text = json.dumps(_llama.hf_config(cfg, np.dtype(model.dtype).name, architecture), indent=2,
                      sort_keys=True) + "\n"

    tokenizer = getattr(model, "tokenizer", None)
    tokenizer_json = None
    if tokenizer is not None and getattr(tokenizer, "type_name", None) == "hf":   # an HFTokenizer
        tokenizer_json = json.dumps(tokenizer.to_dict()["tokenizer_json"], ensure_ascii=False)

    def fill(tmp):
        write_safetensors(os.path.join(tmp, "model.safetensors"), tensors, {"format": "pt"})
        atomic_write(os.path.join(tmp, "config.json"), text.encode("utf-8"))
        if tokenizer_json is not None:
            atomic_write(os.path.join(tmp, "tokenizer.json"), tokenizer_json.encode("utf-8"))
    atomic_folder(folder, fill, owned=_HF_FILES | ({"tokenizer.json"} if tokenizer_json else set()))
