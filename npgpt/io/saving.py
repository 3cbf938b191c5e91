"""Saving a model: npgpt's own safetensors file (config and tokenizer in its metadata), and
Hugging Face GPT-2 and Llama / Qwen2 / Mistral folders, written atomically
(:mod:`npgpt.io.files`) without touching the user's files in the folder.
"""

from __future__ import annotations

import json
import os
import re
import warnings

import numpy as np

from .._version import __version__
from . import gpt2 as _gpt2
from . import llama as _llama
from .files import atomic_folder, atomic_write
from .safetensors import write_safetensors

#: The ``format`` an npgpt file names in its safetensors metadata.
FORMAT_NAME = "npgpt"
#: A model folder's own files (what npgpt writes or reads as the model: config, weights in
#: every form, tokenizer): save_gpt2 / save_hf replace them, or remove those the new model
#: lacks; every other entry of the folder is the user's and is never touched.
MODEL_FILES = frozenset(["config.json", "model.safetensors", "model.safetensors.index.json",
                         "pytorch_model.bin", "pytorch_model.bin.index.json", "tokenizer.json",
                         "vocab.json", "merges.txt"])
_SHARD_FILE_RE = re.compile(r"^(model-[0-9]+-of-[0-9]+\.safetensors"
                            r"|pytorch_model-[0-9]+-of-[0-9]+\.bin)$")


def is_model_file(name: str) -> bool:
    """Whether ``name`` is one of a model folder's own files (:data:`MODEL_FILES`, or a
    weight shard such as ``model-00001-of-00002.safetensors``), which :func:`save_gpt2` and
    :func:`save_hf` replace or remove.

    Examples
    --------
    >>> is_model_file("tokenizer.json"), is_model_file("model-00002-of-00003.safetensors")
    (True, True)
    >>> is_model_file("README.md"), is_model_file("notes.txt")
    (False, False)
    """
    return name in MODEL_FILES or _SHARD_FILE_RE.match(name) is not None


_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")


def _warn_if_tokenizer_removed(model, folder) -> None:
    """Warn when saving ``model``, which has no tokenizer, removes ``folder``'s tokenizer."""
    if getattr(model, "tokenizer", None) is not None or not os.path.isdir(folder):
        return
    found = [name for name in _TOKENIZER_FILES if os.path.lexists(os.path.join(folder, name))
             and not os.path.isdir(os.path.join(folder, name))]
    if found:
        warnings.warn(f"{os.fspath(folder)}: model.tokenizer is None, so the folder's "
                      f"{' and '.join(found)} (which need not belong to these weights) "
                      f"{'is' if len(found) == 1 else 'are'} removed; set model.tokenizer "
                      f"before saving to keep a tokenizer", UserWarning, stacklevel=3)


def _unwritten_tokenizer(tokenizer, folder, files: str, kind: str) -> None:
    """Warn that ``folder`` is written without ``tokenizer`` (one that ``files`` cannot hold)."""
    warnings.warn(f"{os.fspath(folder)}: model.tokenizer ({type(tokenizer).__name__}) cannot be "
                  f"written as {files}, which {kind} folders hold: the folder is written with "
                  f"no tokenizer (any earlier one is removed), so npgpt.load gives "
                  f"model.tokenizer None; model.save(path) keeps the tokenizer",
                  UserWarning, stacklevel=3)


def save_npgpt(model, path, dtype=None) -> None:
    """Write npgpt's own file: safetensors with the config and tokenizer in the metadata.

    Keys and shapes are ``model.state_dict()``'s (the seed's PyTorch names), dtype F32 or
    F64 as the model's — or ``dtype=np.float16`` to store half the bytes (rounded to float16;
    ``load`` gives a float32 model back); ``__metadata__`` = {"format": "npgpt", "config": GPTConfig JSON,
    "tokenizer": ``json.dumps(model.tokenizer.to_dict())`` (when there is one),
    "npgpt_version": ...}. The file is written to a temporary file in the same folder and
    renamed, so a crash never leaves half a checkpoint. ``load(path)`` gives back the same
    parameters bit for bit. A file already at ``path`` is replaced (the caller named it);
    a folder there is refused with IsADirectoryError, before anything is written.

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> save_npgpt(model, "m.safetensors")             # the same as model.save("m.safetensors")
    >>> from npgpt.io import read_safetensors
    >>> read_safetensors("m.safetensors")[1]["format"]
    'npgpt'
    >>> back = npgpt.load("m.safetensors")
    >>> back.config == model.config, all(np.array_equal(back.params[k], v)
    ...                                  for k, v in model.params.items())
    (True, True)
    """
    if os.path.isdir(path):
        raise IsADirectoryError(f"{os.fspath(path)} is a folder; model.save writes one file: "
                                f"name it, e.g. {os.path.join(os.fspath(path), 'model.safetensors')} "
                                f"(model.save_gpt2 and model.save_hf write folders)")
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
        from ..tokenizers.base import tokenizer_to_dict      # to_dict() + chat template, bos/eos
        metadata["tokenizer"] = json.dumps(tokenizer_to_dict(tokenizer), ensure_ascii=False)
    write_safetensors(path, params, metadata)


def save_gpt2(model, folder) -> None:
    """Write a Hugging Face GPT-2 folder: ``config.json`` + ``model.safetensors`` (and
    ``vocab.json`` + ``merges.txt`` when the model carries a BPETokenizer).

    ``transformers.GPT2LMHeadModel.from_pretrained(folder)`` then computes the same logits.
    Only configs GPT-2 can express are accepted: ``residual="pre_norm"``, ``gelu="tanh"``,
    ``tie_embeddings=True``, ``output_bias=False``; anything else raises a ValueError naming
    the field. Conv1D weights are written transposed; ``lm_head`` is tied to ``wte``.

    An existing folder (:func:`npgpt.io.files.atomic_folder`): its model files
    (:func:`is_model_file`: config.json, the weights in any form — model.safetensors, shards
    and their index, pytorch_model.bin — and the tokenizer files tokenizer.json, vocab.json,
    merges.txt) are replaced, and those the new model lacks removed, so no file of an earlier
    model is left beside the new weights (nor a tokenizer: saving a model whose
    ``tokenizer`` is None removes the folder's tokenizer files, with a UserWarning); every
    other entry (a README.md, notes, data, a subfolder) is kept as it was, never moved or
    copied. A folder of model files only (an
    earlier save) is rebuilt beside itself and swapped in at once, so a reader (or a crash)
    sees the old model or the new one, never new weights with an old config (on Linux one
    ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames, between which the folder is
    briefly absent). A folder that also holds other files is not swapped: its model files
    are replaced inside it one by one, each atomically, config.json last.

    A tokenizer that GPT-2's files cannot hold (anything but a ``BPETokenizer`` with GPT-2's
    split pattern) is not written, and a UserWarning says so: the folder then has none.

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
    writable = (tokenizer is not None and hasattr(tokenizer, "save_gpt2")       # a BPETokenizer
                and getattr(tokenizer, "pattern", None) == "gpt2")           # GPT-2's split
    if tokenizer is not None and not writable:
        _unwritten_tokenizer(tokenizer, folder, "vocab.json + merges.txt (GPT-2's byte-level "
                             "BPE with its split pattern)", "GPT-2")

    def fill(tmp):
        write_safetensors(os.path.join(tmp, "model.safetensors"), tensors, {"format": "pt"})
        atomic_write(os.path.join(tmp, "config.json"), text.encode("utf-8"))
        if writable:
            tokenizer.save_gpt2(os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt"))
    _warn_if_tokenizer_removed(model, folder)
    atomic_folder(folder, fill, owned=is_model_file)


def save_hf(model, folder, architecture=None) -> None:
    """Write a Hugging Face Llama, Qwen2 or Mistral folder: ``config.json`` +
    ``model.safetensors``, which ``transformers.AutoModelForCausalLM.from_pretrained(folder)``
    and ``npgpt.load(folder)`` load back.

    ``architecture`` ("llama", "qwen2", "mistral"; None: Qwen2 when the model has q/k/v
    biases, else Llama) picks the class named in config.json.

    Only the Llama-family block can be written: ``norm="rmsnorm"``, ``positions="rope"``,
    ``mlp="swiglu"``, ``residual="pre_norm"``, ``output_bias=False``, ``rope_layout="half"``;
    anything else raises a ValueError naming the field. ``lm_head.weight`` is written only
    when the embeddings are untied; a tokenizer read from a ``tokenizer.json`` (an
    ``HFTokenizer``) is written back as ``tokenizer.json``. Any other tokenizer cannot be:
    the folder is written without one (an earlier ``tokenizer.json`` is removed, never left
    beside weights it does not belong to) and a UserWarning says so; so does saving a model
    whose ``tokenizer`` is None into a folder with a ``tokenizer.json``. An existing folder is
    treated as by :func:`save_gpt2`: its model files replaced or removed, every other entry
    kept as it was.

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
    elif tokenizer is not None:
        _unwritten_tokenizer(tokenizer, folder, "tokenizer.json (only a tokenizer read from a "
                             "tokenizer.json can be)", "Hugging Face")

    def fill(tmp):
        write_safetensors(os.path.join(tmp, "model.safetensors"), tensors, {"format": "pt"})
        atomic_write(os.path.join(tmp, "config.json"), text.encode("utf-8"))
        if tokenizer_json is not None:
            atomic_write(os.path.join(tmp, "tokenizer.json"), tokenizer_json.encode("utf-8"))
    _warn_if_tokenizer_removed(model, folder)
    atomic_folder(folder, fill, owned=is_model_file)
