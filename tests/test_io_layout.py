"""npgpt.io's layout, read from the code (``tests/structure.py``): the package face only
re-exports; loading, saving, Hugging Face folders and the config checks have modules of their
own; the GGUF container (header, metadata, tensor table) sits below the GGUF model mapping and
the tokenizer glue, so that the tokenizers can read a GGUF file's metadata without reaching
io's upper modules; no io module is long, has a long function, imports a private name of
another module or the npgpt package itself; every name map covers every parameter of every
block kind, npgpt's side derived from the layers' parts; the version lives in a module that
imports nothing."""

import ast
import os
import sys

import numpy as np
import pytest

import npgpt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import structure  # noqa: E402

IO = "npgpt.io"
LOWER = {"npgpt.io.errors", "npgpt.io.files", "npgpt.io.safetensors", "npgpt.io.torch_pickle",
         "npgpt.io.gguf_quants", "npgpt.io.gguf_file", "npgpt.io.gpt2", "npgpt.io.llama",
         "npgpt.io.llama2c", "npgpt.io.build", "npgpt.io.hf_folder"}
UPPER = {IO, "npgpt.io.loading", "npgpt.io.saving", "npgpt.io.gguf", "npgpt.io.gguf_tokenizer"}
FAMILIES = {"npgpt.io.gpt2", "npgpt.io.llama", "npgpt.io.llama2c", "npgpt.io.gguf"}
GPT = dict(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=2,
           tie_embeddings=False, output_bias=False)
LLAMA = dict(GPT, norm="rmsnorm", positions="rope", mlp="swiglu",
             num_kv_heads=1)
QWEN2 = dict(LLAMA, attention_bias=True)


@pytest.fixture(scope="module")
def graph():
    return structure.import_graph()


def io_modules(edges):
    return sorted(m for m in edges if m == IO or m.startswith(IO + "."))


def test_the_layers_of_io_are_all_named_here(graph):
    assert set(io_modules(graph[0])) == LOWER | UPPER


def test_the_gguf_container_imports_only_errors_files_and_the_quants(graph):
    edges, _ = graph
    assert edges["npgpt.io.gguf_file"] == {"npgpt.io.errors", "npgpt.io.files", "npgpt.io.gguf_quants"}


def test_read_gguf_metadata_is_the_containers_by_every_import_path():
    from npgpt.io import read_gguf_metadata as public
    from npgpt.io.gguf import read_gguf_metadata as via_model
    from npgpt.io.gguf_file import read_gguf_metadata as own
    assert public is via_model is own


def test_each_family_reads_its_folder_beside_its_name_map_and_the_shared_parts_know_none(graph):
    from npgpt.io import gpt2, llama
    edges, _ = graph
    assert callable(gpt2.load_gpt2_folder) and callable(llama.load_llama_folder)
    for shared in ("npgpt.io.hf_folder", "npgpt.io.build", "npgpt.io.gguf_file"):
        assert edges[shared] & FAMILIES == set(), shared


def test_each_io_module_imports_only_the_ones_below_it_in_the_face_docs_order(graph):
    order = ["", "loading", "saving", "gguf", "gguf_tokenizer", "llama", "gpt2", "llama2c",
             "hf_folder", "build", "gguf_file", "torch_pickle", "safetensors", "gguf_quants",
             "files", "errors"]
    level = {(IO + "." + name).rstrip("."): i for i, name in enumerate(order)}
    edges, _ = graph
    assert set(level) == set(io_modules(edges))
    upward = {(m, t) for m in level for t in edges[m] if t in level and level[t] <= level[m]}
    assert upward == set()


def test_the_lower_io_modules_import_no_upper_one(graph):
    edges, _ = graph
    reach = {m: edges[m] & UPPER for m in LOWER}
    assert reach == {m: set() for m in LOWER}


def test_io_modules_form_no_cycle_and_never_import_the_package_face(graph):
    edges, _ = graph
    mods = set(io_modules(edges))
    assert structure.cycles({m: edges[m] & mods for m in mods}) == []
    assert [m for m in mods if "npgpt" in edges[m]] == []
    assert [m for m in mods - {IO} if IO in edges[m]] == []


def test_io_imports_only_the_rooms_below_it(graph):
    edges, _ = graph
    below = ("npgpt.io", "npgpt.nn", "npgpt.tokenizers", "npgpt.config", "npgpt.model",
             "npgpt.params", "npgpt._version", "npgpt._repr")
    outside = {(m, t) for m in io_modules(edges) for t in edges[m]
               if not any(t == b or t.startswith(b + ".") for b in below)}
    assert outside == set()


def test_no_io_module_is_long_has_a_long_function_or_imports_a_private_name(graph):
    _, private = graph
    assert [p for p, _ in structure.long_modules() if p.startswith("npgpt/io/")] == []
    assert [f for f in structure.long_functions() if f[0].startswith("npgpt/io/")] == []
    assert [p for p in private if p[0].startswith(IO) or p[1].startswith(IO)] == []


def test_every_name_the_io_face_gave_still_imports_and_is_its_modules():
    from npgpt.io import build, files, gguf, gguf_file, loading, saving
    import npgpt.io as face
    owners = {loading: ["load", "bundled_models", "DATA_DIR"],
              saving: ["save_npgpt", "save_gpt2", "save_hf", "is_model_file", "MODEL_FILES",
                       "FORMAT_NAME"],
              gguf: ["load_gguf", "save_gguf"], gguf_file: ["read_gguf", "read_gguf_metadata"],
              files: ["atomic_write", "atomic_folder", "clean_stale_temporaries", "kind_of",
                      "open_regular"]}
    for module, names in owners.items():
        for name in names:
            assert getattr(face, name) is getattr(module, name), name
    for name in face.__all__:
        assert hasattr(face, name), name
    assert (npgpt.load, npgpt.save_gguf, npgpt.CheckpointError) == (
        face.load, face.save_gguf, face.CheckpointError)
    assert build.SHAPE_FIELDS[:4] == ("vocab_size", "context_length", "d_model", "num_layers")
    for name in ("TensorInfo", "read_gguf", "read_gguf_metadata", "half_split_model",
                 "half_split_rows", "interleave_rows", "npgpt_name", "gguf_name",
                 "config_fields_from_gguf", "MAGIC", "VERSIONS", "ARCHITECTURES", "_dequantized"):
        assert hasattr(gguf, name), name


def test_the_version_has_one_home_that_imports_nothing(tmp_path):
    from npgpt import _version
    from npgpt.io import read_safetensors
    tree = ast.parse(open(_version.__file__, encoding="utf-8").read())
    assert [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))] == []
    assert npgpt.__version__ == _version.__version__
    npgpt.GPT(npgpt.GPTConfig(**GPT), seed=0).save(tmp_path / "m.safetensors")
    assert read_safetensors(tmp_path / "m.safetensors")[1]["npgpt_version"] == _version.__version__


@pytest.mark.parametrize("fields, arch", [(GPT, "gpt2"), (LLAMA, "llama"), (QWEN2, "qwen2")],
                         ids=["gpt2", "llama", "qwen2"])
def test_the_gguf_name_map_is_a_bijection_on_every_parameter(fields, arch):
    from npgpt.io.gguf import gguf_name, npgpt_name
    shapes = npgpt.params.parameter_shapes(npgpt.GPTConfig(**fields))
    theirs = {name: gguf_name(name, arch) for name in shapes}
    assert len(set(theirs.values())) == len(shapes)
    assert {npgpt_name(g, arch) for g in theirs.values()} == set(shapes)


@pytest.mark.parametrize("fields", [GPT, LLAMA, QWEN2], ids=["gpt2", "llama", "qwen2"])
def test_the_hugging_face_name_maps_cover_every_parameter(fields):
    from npgpt.io import gpt2, llama
    cfg = npgpt.GPTConfig(**fields)
    params = npgpt.GPT(cfg, seed=0).params
    family = gpt2 if cfg.norm == "layernorm" else llama
    hf = family.hf_state_dict(params, cfg.num_layers)
    back = family.state_dict_from_hf(hf)
    if family is gpt2:       # GPT-2 ties lm_head to wte: the output layer is not written
        params = {k: v for k, v in params.items() if k != "output_layer.weight"}
    assert sorted(back) == sorted(params)
    for name, value in params.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)


def test_the_llama2c_name_map_covers_every_parameter():
    from npgpt.io.llama2c import _npgpt_name, tensor_layout
    cfg = npgpt.GPTConfig(**dict(LLAMA, num_kv_heads=None))
    header = dict(dim=cfg.d_model, hidden_dim=cfg.ffn_size, n_layers=cfg.num_layers,
                  n_heads=cfg.num_heads, n_kv_heads=cfg.num_heads, vocab_size=cfg.vocab_size,
                  seq_len=cfg.context_length, shared=False, version=0)
    names = {_npgpt_name(name) for name, _, _ in tensor_layout(header) if name is not None}
    assert names == set(npgpt.params.parameter_shapes(cfg))
