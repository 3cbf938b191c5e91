"""The model's structure: the block composes its parts, each parameter name is spelled once,
the machinery lives in its own modules (and the old import paths still work), and the
inference weights say which architecture they are by a field."""

import ast
import os
import sys

import numpy as np
import pytest

import npgpt
from npgpt import inference
from npgpt.nn.block import block_parts

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_reading import counts  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLAMA = dict(norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=1)
# files that still spell parameter names themselves: the loaders' name maps, the training
# checkpoint's quick check, the embedding plot
NOT_YET = {"npgpt/io/__init__.py", "npgpt/io/gpt2.py", "npgpt/io/llama.py", "npgpt/io/gguf.py",
           "npgpt/io/llama2c.py", "npgpt/train.py", "npgpt/viz.py"}
STRUCTURE_FILES = ["npgpt/model.py", "npgpt/params.py", "npgpt/kv_cache.py", "npgpt/inference.py",
                   *(f"npgpt/nn/{name}" for name in sorted(os.listdir(os.path.join(REPO, "npgpt/nn")))
                     if name.endswith(".py"))]


def config(**changes):
    return npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=2,
                           **changes)


def string_constants(path):
    """Every string literal of a file's code (docstrings left out), f-string parts included."""
    tree = ast.parse(open(os.path.join(REPO, path), encoding="utf-8").read())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs}


def library_files():
    for folder, _, files in os.walk(os.path.join(REPO, "npgpt")):
        for name in files:
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(folder, name), REPO).replace(os.sep, "/")


@pytest.mark.parametrize("changes", [{}, LLAMA, dict(LLAMA, attention_bias=True)], ids=["gpt", "llama", "qwen2"])
def test_each_parameter_name_is_spelled_once_beside_its_layer(changes):
    names = {name.split(".", 2)[2] if name.startswith("blocks.") else name
             for name in npgpt.model.parameter_shapes(config(**changes, tie_embeddings=False))}
    norm = block_parts(config(**changes))[0]
    names = {n for n in names if not n.startswith(norm.names)} | set(norm.names)   # "ln1" + ".weight"
    spelled = {path: string_constants(path) for path in library_files() if path not in NOT_YET}
    for name in sorted(names):
        where = [path for path, constants in spelled.items() if name in constants]
        assert len(where) == 1, f"{name} is spelled in {where}"


def test_block_parts_are_chosen_by_the_config_switches():
    assert [p.kind for p in block_parts(config())] == ["layernorm", "learned", "gelu"]
    assert [p.kind for p in block_parts(config(**LLAMA))] == ["rmsnorm", "rope", "swiglu"]
    mixed = config(norm="rmsnorm", mlp="swiglu")
    assert [p.kind for p in block_parts(mixed)] == ["rmsnorm", "learned", "swiglu"]


@pytest.mark.parametrize("changes", [{}, LLAMA, dict(LLAMA, attention_bias=True), dict(mlp="swiglu")],
                         ids=["gpt", "llama", "qwen2", "gpt-swiglu"])
def test_the_parts_shapes_are_the_parameters_of_each_block(changes):
    cfg = config(**changes)
    norm, attention, mlp = block_parts(cfg)
    shapes = npgpt.params.block_parameter_shapes(cfg, 1)
    local = {name[len("blocks.1."):]: shape for name, shape in shapes.items()}
    expected = {f"{n}.{k}": s for n in norm.names[:2] for k, s in norm.shapes(cfg).items()}
    expected.update(attention.shapes(cfg))
    expected.update(mlp.shapes(cfg))
    assert local == expected


def test_block_and_gpt_forward_read_as_compositions_within_their_line_budgets():
    assert counts("npgpt/nn/block.py", "block_forward")[1] <= 12
    assert counts("npgpt/model.py", "gpt_forward")[1] <= 20


def test_no_function_of_the_model_or_its_layers_runs_over_80_lines():
    long = []
    for path in STRUCTURE_FILES:
        tree = ast.parse(open(os.path.join(REPO, path), encoding="utf-8").read())
        long += [f"{path}:{node.name} {node.end_lineno - node.lineno + 1}" for node in ast.walk(tree)
                 if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 80]
    assert not long, long


def test_the_machinery_moved_and_the_old_import_paths_still_work():
    from npgpt import kv_cache, params
    from npgpt.model import (KVCache, block_parameter_shapes, column_major, in_matmul_layout,
                             init_parameters, parameter_shapes, positions_and_mask, rope_inv_freq)
    from npgpt.nn import rope
    assert KVCache is kv_cache.KVCache is npgpt.KVCache
    assert positions_and_mask is kv_cache.positions_and_mask
    assert (parameter_shapes, block_parameter_shapes, init_parameters, column_major, in_matmul_layout) == (
        params.parameter_shapes, params.block_parameter_shapes, params.init_parameters,
        params.column_major, params.in_matmul_layout)
    assert rope_inv_freq is rope.rope_inv_freq


def test_decoding_modules_do_not_import_the_model_for_the_machinery():
    for path in ("npgpt/inference.py", "npgpt/_decoder.py", "npgpt/speculative.py"):
        tree = ast.parse(open(os.path.join(REPO, path), encoding="utf-8").read())
        imported = [node.module for node in tree.body if isinstance(node, ast.ImportFrom)]
        assert "model" not in imported, path


def test_inference_weights_say_their_architecture_by_a_field():
    gpt = inference.weights(npgpt.GPT(config()).params, config())["blocks"][0]
    llama_cfg = config(**LLAMA)
    llama = inference.weights(npgpt.GPT(llama_cfg).params, llama_cfg)["blocks"][0]
    assert (gpt.norm1.kind, gpt.attn.kind, gpt.mlp.kind) == ("layernorm", "stacked", "gelu")
    assert (llama.norm1.kind, llama.attn.kind, llama.mlp.kind) == ("rmsnorm", "separate", "swiglu")
    assert llama.norm1.bias is None and len(llama.attn.qkv) == 3 and len(gpt.attn.qkv) == 1


def test_forward_and_last_logits_share_one_projection_and_agree():
    for cfg in (config(), config(**LLAMA)):
        model = npgpt.GPT(cfg, seed=1, dtype=np.float64, init="torch")
        w = inference.weights(model.params, cfg)
        ids = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
        np.testing.assert_allclose(inference.last_logits(w, ids), inference.forward(w, ids, last_only=True),
                                   rtol=1e-12, atol=1e-12)
    for name in ("_attention", "last_logits"):
        node = next(n for n in ast.parse(open(inference.__file__, encoding="utf-8").read()).body
                    if isinstance(n, ast.FunctionDef) and n.name == name)
        called = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert "_project_qkv" in called, name


# ------------------------------------------------------------------------ the tokenizers room
TOKENIZERS = "npgpt.tokenizers"
# what the tokenizers may import from the rest of npgpt: low-level io pieces, the GGUF
# metadata reader (npgpt.io.gguf, or the container module npgpt.io.gguf_file where it exists),
# and the chat-template renderer -- none of which imports a tokenizer module back
TOKENIZERS_MAY_IMPORT = {"npgpt.io.errors", "npgpt.io.files", "npgpt.io.gguf", "npgpt.io.gguf_file",
                         "npgpt.chat.template"}


def _tokenizer_graph():
    import structure
    edges, private = structure.import_graph()
    return structure, edges, private


def test_the_tokenizers_import_no_cycle_among_themselves_and_base_imports_no_tokenizer():
    structure, edges, _ = _tokenizer_graph()
    inside = {m: {t for t in ts if t.startswith(TOKENIZERS)} for m, ts in edges.items()
              if m.startswith(TOKENIZERS)}
    assert structure.cycles(inside) == []
    # the classes import base, never back: base reaches only the chat-template glue, which
    # imports no tokenizer module
    assert inside["npgpt.tokenizers.base"] <= {"npgpt.tokenizers.chat_template"}
    assert inside["npgpt.tokenizers.chat_template"] == set()
    assert "npgpt.tokenizers.load" not in set().union(*(inside[m] for m in inside if m != TOKENIZERS))


def test_the_tokenizers_import_only_low_level_pieces_of_the_rest_of_npgpt():
    _, edges, _ = _tokenizer_graph()
    outside = {(m, t) for m, ts in edges.items() if m.startswith(TOKENIZERS)
               for t in ts if not t.startswith(TOKENIZERS)}
    assert {t for _, t in outside} <= TOKENIZERS_MAY_IMPORT, sorted(outside)


def test_the_tokenizers_share_no_private_name_and_stay_short():
    structure, _, private = _tokenizer_graph()
    assert [p for p in private if p[0].startswith(TOKENIZERS) or p[1].startswith(TOKENIZERS)] == []
    assert [m for m in structure.long_modules() if m[0].startswith("npgpt/tokenizers/")] == []
    assert [f for f in structure.long_functions() if f[0].startswith("npgpt/tokenizers/")] == []


def test_the_tokenizer_import_paths_still_work():
    from npgpt.tokenizers import load_tokenizer, tokenizer_from_dict, tokenizer_to_dict
    from npgpt.tokenizers.base import tokenizer_from_dict as from_dict, tokenizer_to_dict as to_dict
    from npgpt.tokenizers.bpe import bytes_to_unicode
    from npgpt.tokenizers.hf import HFTokenizer, _example, load_tokenizer_json, read_folder_extras
    from npgpt.tokenizers.load import load_tokenizer as load
    from npgpt.tokenizers.sentencepiece import (BYTE, NORMAL, encode_varint, merge_pieces,
                                                read_llama2c_tokenizer, read_model_proto)
    assert (load, from_dict, to_dict) == (load_tokenizer, tokenizer_from_dict, tokenizer_to_dict)
    assert bytes_to_unicode()[0x20] == "Ġ" and (NORMAL, BYTE) == (1, 6)
    assert callable(encode_varint) and callable(merge_pieces) and callable(read_model_proto)
    assert callable(read_llama2c_tokenizer) and callable(read_folder_extras)
    assert isinstance(load_tokenizer_json(_example()), HFTokenizer)


def test_each_tokenizer_class_records_its_own_type_name_and_subclasses_do_not_replace_it():
    from npgpt.tokenizers import CharTokenizer, tokenizer_from_dict
    from npgpt.tokenizers.base import TOKENIZER_TYPES
    assert sorted(TOKENIZER_TYPES) == ["bpe", "char", "hf", "sentencepiece", "word"]

    class Shouting(CharTokenizer):                   # inherits "char": CharTokenizer stays it
        pass
    assert TOKENIZER_TYPES["char"] is CharTokenizer
    assert type(tokenizer_from_dict(Shouting.from_text("ab").to_dict())) is CharTokenizer
