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
import structure  # noqa: E402  (tests/structure.py: the measures read from the ast)
from test_reading import counts  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLAMA = dict(norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=1)
# every library file spells parameter names only through the layers' parts
NOT_YET = set()
# the chat template renderer: its three stages, the values they work with, its public face
CHAT_TEMPLATE = {"npgpt.chat.template", "npgpt.chat.lexer", "npgpt.chat.parser", "npgpt.chat.evaluate",
                 "npgpt.chat._values"}
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
    assert (llama.norm1.kind, llama.attn.kind, llama.mlp.kind) == ("rmsnorm", "stacked", "swiglu")
    assert llama.norm1.bias is None and len(llama.attn.qkv) == 1 and len(gpt.attn.qkv) == 1
    params = dict(npgpt.GPT(llama_cfg).params)
    params["blocks.0.attn.k_proj.weight"] = params["blocks.0.attn.k_proj.weight"].copy()
    separate = inference.weights(params, llama_cfg)["blocks"][0]
    assert separate.attn.kind == "separate" and len(separate.attn.qkv) == 3


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


def test_viz_and_the_chat_template_have_no_long_module_or_function_no_cycle_no_private_import():
    mods = structure.modules()
    viz = {m for m in mods if m.startswith("npgpt.viz.")}
    assert {"npgpt.viz.report", "npgpt.viz.terminal", "npgpt.viz.figures"} <= viz
    mine = viz | CHAT_TEMPLATE | {"npgpt.viz"}
    assert mine <= set(mods)
    paths = {mods[m] for m in mine}
    assert not [m for m in structure.long_modules() if m[0] in paths]
    assert not [f for f in structure.long_functions() if f[0] in paths]
    edges, private = structure.import_graph()
    assert not [p for p in private if p[0] in mine], private
    assert not [c for c in structure.cycles(edges) if mine & set(c)]


def test_only_the_viz_figures_import_matplotlib_and_only_inside_functions():
    imported = {}
    for path in (p for p in library_files() if p.startswith("npgpt/viz/")):
        tree = ast.parse(open(os.path.join(REPO, path), encoding="utf-8").read())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "matplotlib" for name in names):
                assert id(node) not in top, f"{path} imports matplotlib at import time"
                imported[path] = True
    assert set(imported) == {"npgpt/viz/figures.py"}


def test_the_chat_template_modules_import_only_each_other_and_the_standard_library():
    edges, _ = structure.import_graph()
    for module in sorted(CHAT_TEMPLATE):
        assert edges[module] <= CHAT_TEMPLATE, (module, edges[module] - CHAT_TEMPLATE)
        path = structure.modules()[module]
        tree = ast.parse(open(os.path.join(REPO, path), encoding="utf-8").read())
        outside = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        outside |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    and n.level == 0}
        assert outside <= set(getattr(sys, "stdlib_module_names", outside)), (module, outside)


def test_the_split_viz_and_chat_template_keep_their_old_import_paths():
    from npgpt import viz
    from npgpt.chat import _values, evaluate, lexer, parser
    from npgpt.chat.template import MAX_OUTPUT, Template, TemplateError, lex, parse, render
    assert (lex, parse, TemplateError, MAX_OUTPUT) == (lexer.lex, parser.parse, _values.TemplateError,
                                                       _values.MAX_OUTPUT)
    assert render("{{ x }}", x=1) == Template("{{ x }}").render(x=1) == "1"
    assert evaluate.evaluate(parse("{{ 2 * 3 }}"), {}) == "6"
    assert viz.__all__ == ["STRATEGIES", "strategy_report", "bar_chart", "strategy_table", "inspect_text",
                           "plot_heatmap", "plot_strategies", "plot_embeddings", "plot_attention",
                           "token_label"]
    assert all(callable(getattr(viz, name)) for name in viz.__all__[1:])


# ----------------------------------------------------------------------------- training
# npgpt/train/'s modules, each importing only those before it: the settings and errors, the
# optimiser's math, batches, sizes, the run's state, checkpoints, run folders, the loop
TRAIN_MODULES = ["config", "errors", "optim", "data", "sizes", "state", "checkpoint", "runs", "loop"]
# every public name of the module npgpt/train.py was before it became a package
OLD_TRAIN_NAMES = ["ARCHITECTURES", "AdamW", "BATCH_PARTS", "CHECKPOINT_FORMAT", "LOCK_NAME", "RUN_FILES",
                   "TrainConfig", "TrainState", "TrainingError", "TrainingInterrupted", "architecture",
                   "batch_loss_and_grads", "clip_grad_norm", "decayed_parameters", "estimate_loss",
                   "evaluate", "get_batch", "learning_rate", "load_checkpoint", "matched_ffn_dim",
                   "model_config", "num_parameters", "run_in_folder", "save_checkpoint", "split_corpus",
                   "split_loss", "train", "train_step", "training_memory"]


def test_every_name_of_the_old_training_module_still_imports_from_npgpt_train():
    import npgpt.train
    assert [name for name in OLD_TRAIN_NAMES if not hasattr(npgpt.train, name)] == []
    assert sorted(npgpt.train.__all__) == sorted(OLD_TRAIN_NAMES)


def test_each_training_module_imports_only_the_training_modules_before_it():
    edges, _ = structure.import_graph()
    assert {m for m in structure.modules() if m.startswith("npgpt.train.")} == {
        f"npgpt.train.{name}" for name in TRAIN_MODULES}
    for i, name in enumerate(TRAIN_MODULES):
        inside = {m.split(".")[2] for m in edges[f"npgpt.train.{name}"] if m.startswith("npgpt.train.")}
        assert inside <= set(TRAIN_MODULES[:i]), f"npgpt.train.{name} imports {sorted(inside - set(TRAIN_MODULES[:i]))}"


def test_the_optimiser_knows_only_its_settings_and_the_layers_names():
    edges, _ = structure.import_graph()
    assert edges["npgpt.train.optim"] <= {"npgpt._threads", "npgpt.nn.block", "npgpt.nn.layers",
                                          "npgpt.train.config"}, sorted(edges["npgpt.train.optim"])


def test_the_training_package_has_short_modules_and_functions_and_imports_no_private_name():
    edges, private = structure.import_graph()
    assert [p for p in private if p[0].startswith("npgpt.train")] == []
    assert [m for m in structure.long_modules() if m[0].startswith("npgpt/train/")] == []
    assert [f for f in structure.long_functions() if f[0].startswith("npgpt/train/")] == []
    assert [c for c in structure.cycles(edges) if any(m.startswith("npgpt.train") for m in c)] == []


@pytest.mark.parametrize("changes", [{}, LLAMA, dict(LLAMA, attention_bias=True), dict(norm="rmsnorm"),
                                     dict(mlp="swiglu", tie_embeddings=True)],
                         ids=["gpt", "llama", "qwen2", "gpt-rmsnorm", "gpt-swiglu-tied"])
def test_weight_decay_takes_exactly_the_matrices_the_layers_name(changes):
    from npgpt.nn.layers import POSITION_TABLE, TOKEN_TABLE
    from npgpt.train import decayed_parameters
    shapes = npgpt.params.parameter_shapes(config(**changes))
    matrices = [name for name, shape in shapes.items() if len(shape) == 2]
    assert decayed_parameters(shapes) == [n for n in matrices if n not in (TOKEN_TABLE, POSITION_TABLE)]
    assert decayed_parameters(shapes, decay_embeddings=True) == matrices


# ------------------------------------------------------------------- the decoding layer
DECODING = ("npgpt.decoding", "npgpt._run", "npgpt.greedy", "npgpt.generation",
            "npgpt.beam_search", "npgpt.speculative", "npgpt.sampling", "npgpt.processors",
            "npgpt._checks", "npgpt._decoder", "npgpt._fast_sampling", "npgpt.chat.session")


def test_the_decoding_modules_are_in_no_import_cycle_and_share_no_private_name():
    edges, private = structure.import_graph()
    cycles = [c for c in structure.cycles(edges) if set(c) & set(DECODING)]
    assert not cycles, cycles
    crossing = [p for p in private if p[0] in DECODING or p[1] in DECODING]
    assert not crossing, crossing


def test_the_decoding_modules_and_their_functions_are_short():
    paths = {structure.modules()[m] for m in DECODING}
    assert not [m for m in structure.long_modules() if m[0] in paths]
    assert not [f for f in structure.long_functions() if f[0] in paths]


def test_the_strategies_build_on_the_core_and_generate_dispatches():
    edges, _ = structure.import_graph()
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


def test_generate_is_a_function_and_the_decoding_import_paths_work():
    from npgpt import beam_search, generation, processors, sampling, speculative
    from npgpt import GenerateOutput, GenerationConfig, generate, stream
    from npgpt.decoding import GenerationConfig as config_class
    assert (generate, stream, GenerationConfig, GenerateOutput) == (
        npgpt.generate, npgpt.stream, npgpt.GenerationConfig, npgpt.GenerateOutput)
    assert generate is generation.generate and GenerationConfig is config_class
    assert not hasattr(npgpt.generate, "stream")            # no attributes pinned on the function
    assert callable(beam_search.beam_search) and callable(speculative.speculative_steps)
    assert sampling.repetition_penalty is processors.repetition_penalty
    assert "suppress_tokens" in sampling.SAMPLING_OPTIONS
    assert "npgpt.generate" not in structure.modules()     # no module named like the function


# ------------------------------------------------------------------------ the tokenizers room
TOKENIZERS = "npgpt.tokenizers"
# what the tokenizers may import from the rest of npgpt: low-level io pieces, the GGUF
# metadata reader (npgpt.io.gguf, or the container module npgpt.io.gguf_file where it exists),
# and the chat-template renderer -- none of which imports a tokenizer module back
TOKENIZERS_MAY_IMPORT = {"npgpt.io.errors", "npgpt.io.files", "npgpt.io.gguf", "npgpt.io.gguf_file",
                         "npgpt.chat.template"}


def _tokenizer_graph():
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


# The whole package, measured from the ast by tests/structure.py (the structure issue's table).

def test_no_import_cycles_among_npgpt_modules():
    edges, _ = structure.import_graph()
    assert structure.cycles(edges) == []


def test_at_most_six_private_names_cross_modules():
    _, private = structure.import_graph()
    assert len(private) <= 6, private


def test_no_module_over_700_lines_and_no_function_over_80():
    assert structure.long_modules() == []
    assert structure.long_functions() == []


def test_no_module_is_named_like_the_generate_function():
    assert "npgpt.generate" not in structure.modules()
