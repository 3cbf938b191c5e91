"""Loading a model: ``load(path)`` recognises the format from the content (the table in
:mod:`npgpt.io`) and hands it to its reader — npgpt's own safetensors file and bare
state_dicts (seed or GPT-2 names) here, Hugging Face folders by family (:mod:`npgpt.io.gpt2`,
:mod:`npgpt.io.llama`), GGUF (:mod:`npgpt.io.gguf`), llama2.c (:mod:`npgpt.io.llama2c`) — and
names the bundled models.
"""

from __future__ import annotations

import json
import os
import re
import stat
import warnings

import numpy as np

from ..nn.layers import LAYERNORM, OUTPUT_BIAS, OUTPUT_WEIGHT, POSITION_TABLE, TOKEN_TABLE
from . import gpt2 as _gpt2
from . import llama as _llama
from . import llama2c as _llama2c
from .build import (SHAPE_FIELDS, build_model, checked_config, cut, fitting_tokenizer,
                    make_config, model_dtype)
from .errors import CheckpointError, reject_repeated_keys, short_repr
from .files import kind_of, open_regular
from .gguf import load_gguf
from .hf_folder import with_npgpt_names
from .safetensors import read_safetensors
from .saving import FORMAT_NAME
from .torch_pickle import read_torch_zip

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FOLDER_READS = 3         # tries at reading a folder that another process keeps replacing
_FIRST_NORM = f"{LAYERNORM.names[0]}.weight"          # a seed state_dict's blocks.N.ln1.weight
_GPT2_ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
# bundled llama2.c models: name -> (checkpoint, tokenizer) in npgpt/data
_LLAMA2C_BUNDLED = {"stories260K": ("stories260K.bin", "tok512.bin")}


def bundled_models() -> list:
    """Names accepted by ``load(name)``: the ``*.safetensors`` files in ``npgpt/data``.

    Examples
    --------
    >>> bundled_models()
    ['shakespeare-char', 'shakespeare-char-draft', 'stories260K']
    """
    try:
        files = os.listdir(DATA_DIR)
    except OSError:
        return []
    llama2c = [name for name, pair in _LLAMA2C_BUNDLED.items() if set(pair) <= set(files)]
    return sorted([f[:-len(".safetensors")] for f in files if f.endswith(".safetensors")]
                  + llama2c)


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
    V, C = shape(TOKEN_TABLE, 2)
    ctx, C2 = shape(POSITION_TABLE, 2)
    if C2 != C:
        raise CheckpointError(f"{source}: {POSITION_TABLE} has width {C2}, "
                              f"{TOKEN_TABLE} {C}")
    layers = 0
    while f"blocks.{layers}.{_FIRST_NORM}" in state:
        layers += 1
    if layers == 0:
        raise CheckpointError(f"{source}: no transformer blocks (blocks.0.{_FIRST_NORM} missing)")
    return dict(vocab_size=int(V), d_model=int(C), context_length=int(ctx), num_layers=layers,
                tie_embeddings=OUTPUT_WEIGHT not in state,
                output_bias=OUTPUT_BIAS in state, layer_norm_eps=1e-5, dropout=0.0)


def _model_from_state_dict(state: dict, overrides: dict, source: str):
    """A model from a bare state_dict (seed or GPT-2 names), config from shapes + overrides."""
    non_float = [k for k, v in state.items() if v.dtype.kind != "f"
                 and not k.endswith((".causal_mask", "attn.bias", "attn.masked_bias"))]
    if non_float:
        shown = ", ".join(cut(name, 80) for name in non_float[:5])
        raise CheckpointError(f"{source}: non-floating tensors {shown}")
    if _gpt2.is_gpt2_state_dict(state):
        state = with_npgpt_names(_gpt2.state_dict_from_hf, state, source)
        fields = _infer_seed_fields(state, source)
        fields.update(residual="pre_norm", gelu="tanh", output_bias=False)
        lm_head, wte = state.get(OUTPUT_WEIGHT), state[TOKEN_TABLE]
        if lm_head is not None and lm_head.shape == wte.shape and np.array_equal(lm_head, wte):
            fields["tie_embeddings"] = True       # GPT-2's lm_head is wte, saved twice
        inferred = SHAPE_FIELDS
    else:
        fields = _infer_seed_fields(state, source)
        inferred = SHAPE_FIELDS
    config = make_config(fields, overrides, source, inferred)
    floats = {k: v for k, v in state.items() if v.dtype.kind == "f"}
    return build_model(config, state, model_dtype(floats, source), source)


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
                              f"{type(exc).__name__}: {cut(str(exc), 400)}") from None
    model.tokenizer = fitting_tokenizer(tokenizer, model.config, source)


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
    config = checked_config(fields, source, "invalid config in the metadata")
    if overrides:
        config = make_config(config.to_dict(), overrides, source, SHAPE_FIELDS)
    kinds = {np.dtype(v.dtype) for v in tensors.values()}
    floats = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}
    if len(kinds) > 1 or not kinds <= floats:
        raise CheckpointError(f"{source}: an npgpt file holds only F16, only F32 or only F64 "
                              f"tensors, found {', '.join(sorted(k.name for k in kinds))}")
    dtype = kinds.pop() if kinds else np.dtype(np.float32)
    model = build_model(config, tensors, np.float64 if dtype == np.float64 else np.float32, source)
    if "tokenizer" in metadata:
        _attach_tokenizer_from_dict(model, metadata["tokenizer"], source)
    return model


def _identity(folder):
    """(device, inode, modification time) of ``folder``, which a save changes (a swap the
    inode, files renamed inside it the time); None if gone."""
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns


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
            return _llama.load_llama_folder(folder, hf, overrides)
        return _gpt2.load_gpt2_folder(folder, overrides)
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
    a swap in between could pair the old config with the new weights, and so could a save
    that replaces the files inside a folder holding user files too. The folder's inode and
    modification time tell: if either changed during the read, the read is repeated.
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
    """'zip', 'llama2c', 'safetensors', or raise CheckpointError naming what the file looks
    like."""
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
    if _llama2c_file(path, size):
        return "llama2c"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        raise CheckpointError(f"{os.fspath(path)}: a bare pickle, not a PyTorch zip or "
                              f"safetensors file; refusing to unpickle it")
    raise CheckpointError(f"{os.fspath(path)}: unrecognised format ({size} bytes, starting "
                          f"{head[:8]!r}): not safetensors, a PyTorch zip, or a GPT-2 folder")


def _refuse_training_state(path: str) -> None:
    """A CheckpointError naming the model beside it when ``path`` is the training state that
    ``npgpt train`` writes (``ckpt.npz``: an .npz with ``meta`` and ``param/...`` entries)."""
    import zipfile

    try:
        with open_regular(path) as f, zipfile.ZipFile(f) as archive:
            names = set(archive.namelist())
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return                                    # read_torch_zip says what is wrong
    if "meta.npy" not in names or not any(n.startswith("param/") for n in names):
        return
    model = os.path.join(os.path.dirname(path), "model.safetensors")
    there = "" if os.path.exists(model) else " (not written yet)"
    raise CheckpointError(f"{path}: npgpt's training state (what npgpt train writes to continue "
                          f"a run with --resume), not a model; the model is {model}{there} "
                          f"beside it")


def _load_bundled(name: str, overrides: dict):
    """The bundled model ``name``, or FileNotFoundError listing the bundled models."""
    names = bundled_models()
    if name in _LLAMA2C_BUNDLED and name in names:
        checkpoint, tokenizer = (os.path.join(DATA_DIR, f) for f in _LLAMA2C_BUNDLED[name])
        return _load_llama2c(checkpoint, overrides, tokenizer)
    if _NAME_RE.match(name) and "." not in name and name in names:
        return _load_safetensors_file(os.path.join(DATA_DIR, name + ".safetensors"), overrides)
    listing = ", ".join(names) if names else "none installed"
    raise FileNotFoundError(f"no file or folder {short_repr(name, 200)}, and no bundled model "
                            f"of that name (bundled models: {listing})")


def _llama2c_file(path, size: int) -> bool:
    """Whether ``path`` (``size`` bytes) is a llama2.c checkpoint (:mod:`.llama2c`)."""
    with open_regular(path) as f:
        head = f.read(_llama2c.VERSIONED_HEADER)
    return _llama2c.looks_like_llama2c(head, size)


def _load_llama2c(path, overrides: dict, tokenizer=None):
    """A llama2.c checkpoint, with llama2.c's tokenizer.bin (or any tokenizer file) when
    ``tokenizer`` names one."""
    source = os.fspath(path)
    header, state = _llama2c.read_llama2c(path)
    config = make_config(_llama2c.config_fields(header), overrides, source, SHAPE_FIELDS)
    model = build_model(config, state, np.float32, source)
    if tokenizer is not None:
        _attach_tokenizer_file(model, tokenizer)
    return model


def _attach_tokenizer_file(model, tokenizer) -> None:
    """``model.tokenizer`` from ``tokenizer``: a tokenizer object, or a file that
    :func:`npgpt.tokenizers.load_tokenizer` reads (npgpt's JSON, a SentencePiece
    ``tokenizer.model``, llama2.c's ``tokenizer.bin``)."""
    if not isinstance(tokenizer, (str, bytes, os.PathLike)):
        model.tokenizer = fitting_tokenizer(tokenizer, model.config, "tokenizer")
        return
    from ..tokenizers import load_tokenizer
    source = os.fspath(tokenizer)
    try:
        loaded = load_tokenizer(tokenizer)
    except OSError:
        raise
    except Exception as exc:   # an untrusted tokenizer file: any failure is a bad file
        raise CheckpointError(f"{source!s}: {cut(str(exc), 400)}") from None
    model.tokenizer = fitting_tokenizer(loaded, model.config, str(source))


def load(path, tokenizer=None, **config_overrides):
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
    tokenizer : str, os.PathLike or tokenizer, optional
        The model's tokenizer, replacing any the checkpoint carries: a tokenizer object or
        a file (npgpt's tokenizer JSON, a SentencePiece ``tokenizer.model``, llama2.c's
        ``tokenizer.bin``) -- ``npgpt.load("stories260K.bin", tokenizer="tok512.bin")``.

    Returns
    -------
    npgpt.GPT, float32 (float64 if every stored float tensor is float64), with
    ``model.tokenizer`` set when the checkpoint carries one.

    Raises
    ------
    CheckpointError
        Malformed, truncated, hostile or unsupported input, a tokenizer with ids past the
        model's vocabulary, a path that is a FIFO, a device or a socket (refused without
        reading it), a missing override, or npgpt train's ``ckpt.npz`` (a training state,
        not a model: the error names the ``model.safetensors`` beside it).
    FileNotFoundError
        ``path`` does not exist (and, for a bare name, no bundled model has that name).

    Examples
    --------
    >>> import npgpt
    >>> npgpt.load("shakespeare-char").tokenizer               # a bundled model, by name
    CharTokenizer(vocab_size=65)

    A Hugging Face GPT-2 folder (here a tiny one, written by :func:`save_gpt2`):

    >>> from npgpt.io import save_gpt2
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
        model = _load_bundled(path, config_overrides)
    else:
        model = _load_path(path, mode, config_overrides)
    if tokenizer is not None:
        _attach_tokenizer_file(model, tokenizer)
    return model


def _load_path(path, mode, config_overrides: dict):
    """The model of the file or folder ``path`` (``mode``: its ``st_mode``)."""
    if stat.S_ISDIR(mode):
        return _load_folder(path, config_overrides)
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path}: {kind_of(mode)}, not a checkpoint file or folder; "
                              f"refusing to read it")
    kind = _sniff(path)
    if kind == "zip":
        _refuse_training_state(path)
        return _model_from_state_dict(read_torch_zip(path), config_overrides, path)
    if kind == "gguf":
        return load_gguf(path, **config_overrides)
    if kind == "llama2c":
        return _load_llama2c(path, config_overrides)
    return _load_safetensors_file(path, config_overrides)
