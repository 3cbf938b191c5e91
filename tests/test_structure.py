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


# ------------------------------------------------------------------- the decoding layer
DECODING = ("npgpt.decoding", "npgpt._run", "npgpt.greedy", "npgpt.generation", "npgpt.generate",
            "npgpt.beam_search", "npgpt.speculative", "npgpt.sampling", "npgpt.processors",
            "npgpt._checks", "npgpt._decoder", "npgpt._fast_sampling", "npgpt.chat.session")


def _structure():
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import structure
    return structure


def test_the_decoding_modules_are_in_no_import_cycle_and_share_no_private_name():
    structure = _structure()
    edges, private = structure.import_graph()
    cycles = [c for c in structure.cycles(edges) if set(c) & set(DECODING)]
    assert not cycles, cycles
    crossing = [p for p in private if p[0] in DECODING or p[1] in DECODING]
    assert not crossing, crossing


def test_the_decoding_modules_and_their_functions_are_short():
    structure = _structure()
    paths = {structure.modules()[m] for m in DECODING}
    assert not [m for m in structure.long_modules() if m[0] in paths]
    assert not [f for f in structure.long_functions() if f[0] in paths]


def test_the_strategies_build_on_the_core_and_generate_dispatches():
    edges, _ = _structure().import_graph()
    for strategy in ("npgpt.greedy", "npgpt.beam_search", "npgpt.speculative"):
        assert "npgpt._run" in edges[strategy], strategy
        assert "npgpt.generation" not in edges[strategy], strategy
    assert {"npgpt.greedy", "npgpt.beam_search", "npgpt.speculative"} <= edges["npgpt.generation"]
    assert not edges["npgpt.decoding"] & set(DECODING) - {"npgpt._checks", "npgpt._decoder"}
    assert not edges["npgpt._checks"] & set(DECODING)      # the rules import no decoding module


def test_the_token_id_rules_are_functions_of_checks_named_in_code_not_in_strings():
    from npgpt import _checks
    assert _checks.RULES["logit_bias"] is _checks.bias_dict
    source = open(_checks.__file__, encoding="utf-8").read()
    assert "importlib.import_module(\".generate\"" not in source and "\"_logit_bias\"" not in source
    with pytest.raises(ValueError, match="suppress_tokens must be an int or a list of ints"):
        _checks.check_option("suppress_tokens", "a")


def test_generate_runs_the_processor_chain_of_sampling_process(monkeypatch):
    from npgpt.processors import Processors
    calls = []
    chain = Processors.__call__

    def recorded(self, *args, **kwargs):
        calls.append(self.o)
        return chain(self, *args, **kwargs)

    monkeypatch.setattr(Processors, "__call__", recorded)
    options = dict(repetition_penalty=1.3, suppress_tokens=[0])
    npgpt.sampling.process(np.zeros(10), [1, 2], **options)
    npgpt.generate(npgpt.GPT(config(), seed=0), [1, 2], max_new_tokens=2, num_beams=2, **options)
    npgpt.generate(npgpt.GPT(config(), seed=0), [1, 2], max_new_tokens=2, **options)
    assert len(calls) == 5 and all(o.repetition_penalty == 1.3 for o in calls)


def test_generate_is_a_function_and_the_old_decoding_import_paths_still_work():
    from npgpt import beam_search, generation, processors, sampling, speculative
    from npgpt.generate import GenerateOutput, GenerationConfig, generate, stream
    from npgpt.decoding import GenerationConfig as config_class
    assert (generate, stream, GenerationConfig, GenerateOutput) == (
        npgpt.generate, npgpt.stream, npgpt.GenerationConfig, npgpt.GenerateOutput)
    assert generate is generation.generate and GenerationConfig is config_class
    assert not hasattr(npgpt.generate, "stream")            # no attributes pinned on the function
    assert callable(beam_search.beam_search) and callable(speculative.speculative_steps)
    assert sampling.repetition_penalty is processors.repetition_penalty
    assert "suppress_tokens" in sampling.SAMPLING_OPTIONS
