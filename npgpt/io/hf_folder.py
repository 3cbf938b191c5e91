"""What reading any Hugging Face folder takes, whatever the family: its JSON files
(``config.json``, ``model.safetensors.index.json``), its tensors — ``model.safetensors``, the
shards the index lists, or ``pytorch_model.bin`` — renamed by the family's name map, and the
model they make. Each family's folder reader (:func:`npgpt.io.gpt2.load_gpt2_folder`,
:func:`npgpt.io.llama.load_llama_folder`) is built from these.
"""

from __future__ import annotations

import json
import os
import re

from ..nn.layers import OUTPUT_WEIGHT
from .build import SHAPE_FIELDS, build_model, make_config, model_dtype
from .errors import CheckpointError, reject_repeated_keys, short_repr
from .files import open_regular
from .safetensors import read_safetensors
from .torch_pickle import read_torch_zip

MAX_CONFIG_BYTES = 10 * 1024 * 1024
_SHARD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")


def read_config_json(path) -> dict:
    """Parse a Hugging Face ``config.json`` (or another JSON file of the folder, at most 10 MB)
    into a dict, or raise CheckpointError.

    Examples
    --------
    >>> with open("config.json", "w") as f:
    ...     _ = f.write('{"model_type": "gpt2", "n_embd": 768, "n_head": 12}')
    >>> read_config_json("config.json")
    {'model_type': 'gpt2', 'n_embd': 768, 'n_head': 12}
    """
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{os.fspath(path)}: {size} bytes is too large for a "
                                  f"config.json")
        raw = f.read(MAX_CONFIG_BYTES + 1)
    try:
        config = json.loads(raw.decode("utf-8"), object_pairs_hook=reject_repeated_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{os.fspath(path)}: not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{os.fspath(path)}: must hold a JSON object")
    return config


def with_npgpt_names(state_dict_from_hf, tensors: dict, source: str) -> dict:
    """``state_dict_from_hf(tensors)`` (a family's: GPT-2's or the Llama family's names ->
    npgpt's), its CheckpointError (an unknown name, two names for one parameter) naming
    ``source``.

    >>> from npgpt.io.gpt2 import state_dict_from_hf
    >>> sorted(with_npgpt_names(state_dict_from_hf, {"wte.weight": np.zeros((5, 4))}, "m"))
    ['token_embedding.weight']
    >>> with_npgpt_names(state_dict_from_hf, {"wte.weight": np.zeros(5), "h.0.nope": np.zeros(1)}, "m")
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: m: unknown tensor name(s) ['h.0.nope']
    """
    try:
        return state_dict_from_hf(tensors)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def read_hf_tensors(folder, source: str) -> dict:
    """Every tensor of a Hugging Face folder: ``model.safetensors``, the shards that
    ``model.safetensors.index.json`` lists (its ``weight_map``: tensor name -> shard file in
    the same folder), or ``pytorch_model.bin``.

    >>> from npgpt.io import write_safetensors
    >>> os.makedirs("hf")
    >>> write_safetensors("hf/model.safetensors", {"wte.weight": np.zeros((5, 4), np.float32)})
    >>> {name: t.shape for name, t in read_hf_tensors("hf", "hf").items()}
    {'wte.weight': (5, 4)}
    """
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(single):            # a FIFO too: read_safetensors refuses it, unblocked
        return read_safetensors(single)[0]
    if os.path.exists(index):
        weight_map = read_config_json(index).get("weight_map")
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


def model_from_hf(state: dict, fields: dict, overrides: dict, source: str):
    """The model of a Hugging Face folder: its config fields (with ``overrides``) and its
    tensors renamed to npgpt's names.

    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1,
    ...                       gelu="tanh", tie_embeddings=True, output_bias=False)
    >>> state = npgpt.GPT(cfg, seed=0).state_dict()
    >>> model_from_hf(state, cfg.to_dict(), {}, "tiny-gpt2").config == cfg
    True
    """
    non_float = [k for k, v in state.items() if v.dtype.kind != "f"]
    if non_float:
        raise CheckpointError(f"{source}: non-floating tensors {short_repr(non_float[:5])}")
    if not fields["tie_embeddings"] and OUTPUT_WEIGHT not in state:
        raise CheckpointError(f"{source}: tie_word_embeddings is false but lm_head.weight "
                              f"is missing")
    config = make_config(fields, overrides, source, SHAPE_FIELDS)
    return build_model(config, state, model_dtype(state, source), source)
