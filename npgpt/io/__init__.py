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
                                (npgpt train's ``ckpt.npz`` is refused, naming the
                                ``model.safetensors`` beside it)
a GGUF file (starts ``GGUF``)   llama.cpp's (:mod:`npgpt.io.gguf`): llama, qwen2,
                                gpt2; F32 ... Q8_0 and the K-quants, memory-mapped
a safetensors file              npgpt's own (``"format": "npgpt"`` metadata), else
                                a state_dict with seed or GPT-2 names
a llama2.c ``model.bin``        legacy, version 1 or 2 (:mod:`npgpt.io.llama2c`);
(``ak42``, or a legacy header   its tokenizer.bin with ``tokenizer=``
whose size is the file's)
a bare name (no such path)      a bundled model, ``npgpt/data/<name>.safetensors``
==============================  =================================================

Nothing in a file is ever executed, and no file needs torch: every malformed input raises
:class:`CheckpointError` (a ``ValueError``) saying what is wrong, with every value it
shows cut short (:func:`short_repr`), and memory bounded by a few times the file's size.
Only regular files are read: a FIFO or a device is refused, never waited on.

Writes are atomic (:mod:`npgpt.io.files`): a file through a temporary beside it and a
rename (:func:`atomic_write`; a path that is a folder is refused), a model folder through a
whole new folder swapped in, or, when the folder holds files of its user too, through each
model file replaced inside it (the user's files are never touched); the temporaries of a
killed writer are removed by the next write into the same folder
(:func:`clean_stale_temporaries`).

This package only re-exports; each module has one reason to change, and imports only those
listed after it:

==================  ==========================================================================
``loading``         :func:`load`: the format recognised, npgpt's own file, bare state_dicts,
                    the folder and bundled-model dispatch
``saving``          :func:`save_npgpt`, :func:`save_gpt2`, :func:`save_hf`
``gguf``            GGUF as a model: names and ``<arch>.*`` keys <-> npgpt, load and save
``gguf_tokenizer``  a tokenizer as ``tokenizer.ggml.*`` metadata, and back
``gpt2``, ``llama`` a Hugging Face family: config fields, name map, folder reader
``llama2c``         llama2.c's ``model.bin``: header, tensor order, name map
``hf_folder``       any Hugging Face folder: its JSON files, tensors, shards
``build``           fields and tensors -> a GPT: config checks, overrides, tokenizer fit
``gguf_file``       the GGUF container: header, metadata, tensor table (read and write)
``safetensors``,    the two tensor containers; ``gguf_quants``: ggml's block formats
``torch_pickle``
``files``,          atomic writes, regular files only; :class:`CheckpointError`
``errors``
==================  ==========================================================================
"""

from .errors import CheckpointError, reject_repeated_keys, short_repr  # noqa: F401
from .files import (atomic_folder, atomic_write, clean_stale_temporaries, kind_of,  # noqa: F401
                    open_regular)
from .safetensors import read_safetensors, write_safetensors
from .torch_pickle import read_torch_zip
from .gguf import load_gguf, read_gguf, read_gguf_metadata, save_gguf
from .saving import (FORMAT_NAME, MODEL_FILES, is_model_file, save_gpt2, save_hf,  # noqa: F401
                     save_npgpt)
from .loading import DATA_DIR, bundled_models, load

__all__ = ["CheckpointError", "load", "save_npgpt", "save_gpt2", "save_hf", "read_safetensors",
           "write_safetensors", "read_torch_zip", "bundled_models", "DATA_DIR",
           "atomic_write", "clean_stale_temporaries", "short_repr", "load_gguf", "read_gguf",
           "read_gguf_metadata", "save_gguf"]
