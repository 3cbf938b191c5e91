"""``npgpt convert IN OUT``: any model ``npgpt.load`` reads, written as npgpt's safetensors
file, a Hugging Face folder, or a GGUF file.

==========  =========================================  ==========================
format      written by                                 dtype
==========  =========================================  ==========================
safetensors ``model.save`` (config + tokenizer inside)  f32, f16
hf          ``save_gpt2`` (GPT-2) or ``save_hf``        f32
            (Llama family, rotary pairs half-split)
gguf        :func:`npgpt.io.gguf.save_gguf`             f32, f16, q8_0
==========  =========================================  ==========================

Without ``format``, OUT's name decides: ``*.gguf`` GGUF, ``*.safetensors`` safetensors,
anything else a Hugging Face folder.
"""

from __future__ import annotations

import os

import numpy as np

FORMATS = ("safetensors", "hf", "gguf")
DTYPES = {"safetensors": ("f32", "f16"), "hf": ("f32",), "gguf": ("f32", "f16", "q8_0")}


def output_format(out, format=None) -> str:
    """The format to write ``out`` in: ``format`` if given, else from the name.

    >>> output_format("m.gguf"), output_format("m.safetensors"), output_format("folder")
    ('gguf', 'safetensors', 'hf')
    """
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        return format
    name = os.fspath(out).lower()
    return "gguf" if name.endswith(".gguf") else (
        "safetensors" if name.endswith(".safetensors") else "hf")


def convert(src, out, format=None, dtype="f32") -> str:
    """Load ``src`` with ``npgpt.load`` and write it to ``out``; returns the format written.

    Raises ValueError naming the option when the model or dtype does not fit the format
    (e.g. a seed-style model as a Hugging Face folder, q8_0 outside GGUF).

    >>> convert("shakespeare-char", "sc.safetensors", dtype="f16")
    'safetensors'
    """
    from .io import load, save_gpt2, save_hf
    from .io.gguf import half_split_model, save_gguf
    format = output_format(out, format)
    if dtype not in DTYPES[format]:
        raise ValueError(f"dtype {dtype!r} cannot be written as {format} (it takes "
                         f"{', '.join(DTYPES[format])})")
    model = load(src)
    if format == "gguf":
        save_gguf(model, out, dtype=dtype)
    elif format == "safetensors":
        model.save(out) if dtype == "f32" else _save_f16(model, out)
    elif model.config.norm == "layernorm":
        save_gpt2(model, out)
    else:
        save_hf(half_split_model(model), out)
    return format


def _save_f16(model, out) -> None:
    from .io import save_npgpt
    save_npgpt(model, out, dtype=np.float16)
