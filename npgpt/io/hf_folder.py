"""Hugging Face folders: ``config.json`` names the family — GPT-2 (:mod:`npgpt.io.gpt2`) or
Llama / Qwen2 / Mistral (:mod:`npgpt.io.llama`), each with its config fields and name map — and
the weights come from ``model.safetensors``, the shards ``model.safetensors.index.json`` lists,
or ``pytorch_model.bin``, with the folder's tokenizer (GPT-2's ``vocab.json`` + ``merges.txt``,
the Llama family's ``tokenizer.json``).
"""

from __future__ import annotations

import os
import re

from ..nn.layers import OUTPUT_WEIGHT
from . import gpt2 as _gpt2
from . import llama as _llama
from .build import SHAPE_FIELDS, build_model, cut, fitting_tokenizer, make_config, model_dtype
from .errors import CheckpointError, short_repr
from .safetensors import read_safetensors
from .torch_pickle import read_torch_zip

_SHARD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
_GPT2_ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")


def load_hf_folder(folder, overrides: dict):
    """The model of the Hugging Face folder ``folder`` (it holds ``config.json``): GPT-2, or
    Llama / Qwen2 / Mistral as ``config.json`` says (:func:`_family_of`).

    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2,
    ...                       num_layers=1, gelu="tanh", tie_embeddings=True, output_bias=False)
    >>> npgpt.GPT(cfg, seed=0).save_gpt2("tiny-gpt2")
    >>> load_hf_folder("tiny-gpt2", {}).config == cfg
    True
    """
    hf = _gpt2.read_config_json(os.path.join(folder, "config.json"))
    if _family_of(hf, folder) == "llama":
        return _load_llama_folder(folder, hf, overrides)
    return _load_gpt2_folder(folder, overrides)


def with_npgpt_names(family, tensors: dict, source: str) -> dict:
    """``family.state_dict_from_hf(tensors)`` (GPT-2's or the Llama family's names ->
    npgpt's), its CheckpointError (an unknown name, two names for one parameter) naming
    ``source``.

    >>> sorted(with_npgpt_names(_gpt2, {"wte.weight": np.zeros((5, 4))}, "m"))
    ['token_embedding.weight']
    >>> with_npgpt_names(_gpt2, {"wte.weight": np.zeros((5, 4)), "h.0.nope": np.zeros(1)}, "m")
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: m: unknown tensor name(s) ['h.0.nope']
    """
    try:
        return family.state_dict_from_hf(tensors)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def _load_gpt2_folder(folder, overrides: dict):
    source = os.fspath(folder)
    hf = _gpt2.read_config_json(os.path.join(folder, "config.json"))
    fields = _gpt2.config_fields_from_hf(hf)
    model = _model_from_hf(with_npgpt_names(_gpt2, _read_hf_tensors(folder, source), source), fields,
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
                                  f"{type(exc).__name__}: {cut(str(exc), 400)}") from None
        model.tokenizer = fitting_tokenizer(tokenizer, model.config, f"{source}: vocab.json")
    return model


def _model_from_hf(state: dict, fields: dict, overrides: dict, source: str):
    """The model of a Hugging Face folder: its config fields (with ``overrides``) and its
    tensors renamed to npgpt's names."""
    non_float = [k for k, v in state.items() if v.dtype.kind != "f"]
    if non_float:
        raise CheckpointError(f"{source}: non-floating tensors {short_repr(non_float[:5])}")
    if not fields["tie_embeddings"] and OUTPUT_WEIGHT not in state:
        raise CheckpointError(f"{source}: tie_word_embeddings is false but lm_head.weight "
                              f"is missing")
    config = make_config(fields, overrides, source, SHAPE_FIELDS)
    return build_model(config, state, model_dtype(state, source), source)


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
    model = _model_from_hf(with_npgpt_names(_llama, _read_hf_tensors(folder, source), source), fields,
                           overrides, source)
    path = os.path.join(folder, "tokenizer.json")
    if os.path.exists(path):
        from ..tokenizers.hf import load_tokenizer_json, read_folder_extras
        try:
            tokenizer = read_folder_extras(load_tokenizer_json(path), folder)  # + chat template
        except Exception as exc:   # untrusted tokenizer.json: any failure is a bad folder
            raise CheckpointError(f"{source}: tokenizer.json is invalid: {type(exc).__name__}: "
                                  f"{cut(str(exc), 400)}") from None
        model.tokenizer = fitting_tokenizer(tokenizer, model.config, f"{source}: tokenizer.json")
    return model


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
