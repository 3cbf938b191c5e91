"""Reading torch.save(state_dict) files without torch: parity, the allow-list, hostile zips."""

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import npgpt.io
from npgpt.io import CheckpointError, read_torch_zip
from helpers import FIXTURES, skip_without

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_PT = os.path.join(FIXTURES, "checkpoint_seed.pt")


def expected():
    return np.load(os.path.join(FIXTURES, "checkpoint_expected.npz"))


# ------------------------------------------------ writing PyTorch-style files by hand
def op_global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def op_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def op_int(n):
    return b"J" + struct.pack("<i", n)


def op_tuple(values):
    return b"(" + b"".join(op_int(v) for v in values) + b"t"


def tensor_ops(storage_cls, key, numel, offset, size, stride):
    """The opcodes torch.save writes for one tensor (a _rebuild_tensor_v2 REDUCE)."""
    storage = (b"(" + op_str("storage") + op_global("torch", storage_cls) + op_str(key)
               + op_str("cpu") + op_int(numel) + b"tQ")
    hooks = op_global("collections", "OrderedDict") + b")R"
    return (op_global("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + op_int(offset)
            + op_tuple(size) + op_tuple(stride) + b"\x89" + hooks + b"tR")


def state_dict_pickle(items):
    """items: list of (name, tensor opcodes) -> a data.pkl for an OrderedDict."""
    body = b"".join(op_str(name) + ops for name, ops in items)
    return b"\x80\x02" + op_global("collections", "OrderedDict") + b")R(" + body + b"u."


def write_torch_zip(path, pkl, storages, byteorder=b"little", top="archive"):
    """A zip laid out like torch.save's: <top>/data.pkl, <top>/byteorder, <top>/data/<key>."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{top}/data.pkl", pkl)
        if byteorder is not None:
            zf.writestr(f"{top}/byteorder", byteorder)
        for key, data in storages.items():
            zf.writestr(f"{top}/data/{key}", data)
        zf.writestr(f"{top}/version", b"3\n")
    return path


def simple_zip(path, values=np.arange(6, dtype=np.float32), size=(2, 3), stride=(3, 1),
               offset=0, numel=None, **kw):
    numel = values.size if numel is None else numel
    pkl = state_dict_pickle([("w", tensor_ops("FloatStorage", "0", numel, offset, size, stride))])
    return write_torch_zip(path, pkl, {"0": values.astype("<f4").tobytes()}, **kw)


# ------------------------------------------------------------------------- parity
def test_seed_pt_fixture_loads_without_torch_and_matches_torch_logits():
    e = expected()
    fields = json.loads(str(e["seed:config"]))
    model = npgpt.io.load(SEED_PT, num_heads=fields["num_heads"], residual="seed", gelu="exact")
    assert model.config.vocab_size == fields["vocab_size"]
    assert model.config.context_length == fields["context_length"]
    assert model.config.num_layers == fields["num_layers"]
    assert not model.config.tie_embeddings and model.config.output_bias
    np.testing.assert_allclose(model(e["seed:ids"]), e["seed:logits"], atol=1e-5, rtol=0)


def test_seed_pt_needs_the_overrides_shapes_cannot_give_and_names_them():
    with pytest.raises(CheckpointError, match=r"num_heads=\.\.\., residual=\.\.\., gelu=\.\.\."):
        npgpt.io.load(SEED_PT)
    with pytest.raises(CheckpointError, match=r"gelu=\.\.\."):
        npgpt.io.load(SEED_PT, num_heads=2, residual="seed")
    with pytest.raises(CheckpointError, match="vocab_size=99 contradicts"):
        npgpt.io.load(SEED_PT, num_heads=2, residual="seed", gelu="exact", vocab_size=99)
    with pytest.raises(ValueError, match="unknown config override.*colour"):
        npgpt.io.load(SEED_PT, num_heads=2, residual="seed", gelu="exact", colour="red")


def test_strided_views_offsets_and_shared_storage_are_rebuilt_like_torch(tmp_path):
    storage = np.arange(12, dtype=np.float32)
    pkl = state_dict_pickle([
        ("t", tensor_ops("FloatStorage", "0", 12, 0, (3, 2), (1, 3))),   # a transpose
        ("o", tensor_ops("FloatStorage", "0", 12, 5, (2, 2), (4, 1))),   # offset + row stride
        ("s", tensor_ops("FloatStorage", "0", 12, 11, (), ())),          # a scalar
        ("e", tensor_ops("FloatStorage", "0", 12, 0, (0, 4), (4, 1))),   # empty
    ])
    path = write_torch_zip(tmp_path / "v.pt", pkl, {"0": storage.tobytes()})
    got = read_torch_zip(path)
    np.testing.assert_array_equal(got["t"], storage[:6].reshape(2, 3).T)
    np.testing.assert_array_equal(got["o"], [[5, 6], [9, 10]])
    assert got["s"].shape == () and got["s"] == 11
    assert got["e"].shape == (0, 4)
    got["t"][0, 0] = 100.0                       # copies, not views of one buffer
    assert got["o"][0, 0] == 5


def test_big_endian_files_are_byteswapped(tmp_path):
    values = np.array([1.5, -2.0, 3.25, 1e-3], dtype=np.float32)
    pkl = state_dict_pickle([("w", tensor_ops("FloatStorage", "0", 4, 0, (4,), (1,)))])
    path = write_torch_zip(tmp_path / "be.pt", pkl, {"0": values.astype(">f4").tobytes()},
                           byteorder=b"big")
    got = read_torch_zip(path)["w"]
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, values)


def test_other_storage_dtypes_and_bfloat16(tmp_path):
    bf = np.array([1.0, -0.5, 2.0 ** 20], dtype=np.float32)
    items = [("d", tensor_ops("DoubleStorage", "0", 2, 0, (2,), (1,))),
             ("l", tensor_ops("LongStorage", "1", 2, 0, (2,), (1,))),
             ("b", tensor_ops("BFloat16Storage", "2", 3, 0, (3,), (1,))),
             ("h", tensor_ops("HalfStorage", "3", 1, 0, (1,), (1,)))]
    storages = {"0": np.array([0.1, 0.2]).tobytes(), "1": np.array([3, -4], "<i8").tobytes(),
                "2": (bf.view(np.uint32) >> 16).astype("<u2").tobytes(),
                "3": np.array([0.5], "<f2").tobytes()}
    got = read_torch_zip(write_torch_zip(tmp_path / "d.pt", state_dict_pickle(items), storages))
    np.testing.assert_array_equal(got["d"], [0.1, 0.2])
    np.testing.assert_array_equal(got["l"], [3, -4])
    assert got["b"].dtype == np.float32
    np.testing.assert_array_equal(got["b"], bf)
    assert got["h"].dtype == np.float16 and got["h"][0] == 0.5


# ---------------------------------------------------------- a planted pickle never runs
def payload_zip(path, pkl):
    return write_torch_zip(path, pkl, {})


@pytest.mark.parametrize("module,name", [("builtins", "open"), ("posix", "system"),
                                         ("os", "system"), ("subprocess", "Popen")])
def test_planted_reduce_is_refused_and_creates_no_file(tmp_path, module, name):
    target = tmp_path / "pwned"
    arg = (f"touch {target}" if name in ("system", "Popen") else str(target))
    call = op_global(module, name) + b"(" + op_str(arg) + (op_str("w") if name == "open" else b"") + b"tR"
    pkl = b"\x80\x02" + op_global("collections", "OrderedDict") + b")R(" + op_str("x") + call + b"u."
    path = payload_zip(tmp_path / "evil.pt", pkl)
    with pytest.raises(CheckpointError, match=f"global {module}.{name} is not allowed"):
        npgpt.io.load(path, num_heads=1, residual="seed", gelu="exact")
    assert not target.exists()


def test_the_planted_payload_is_live_under_plain_pickle(tmp_path):
    """The check above can fail: Python's own pickle does run the same bytes."""
    target = tmp_path / "created"
    call = op_global("builtins", "open") + b"(" + op_str(str(target)) + op_str("w") + b"tR"
    handle = pickle.loads(b"\x80\x02" + call + b".")
    handle.close()
    assert target.exists()


def test_stack_global_outside_the_allow_list_is_refused(tmp_path):
    target = tmp_path / "pwned"
    pkl = (b"\x80\x04" + b"\x8c\x08builtins" + b"\x8c\x04open" + b"\x93"
           + b"(" + op_str(str(target)) + op_str("w") + b"tR.")
    with pytest.raises(CheckpointError, match="not allowed"):
        read_torch_zip(payload_zip(tmp_path / "evil.pt", pkl))
    assert not target.exists()


@pytest.mark.parametrize("opcode", [b"i", b"o", b"\x81", b"\x92", b"\x82", b"P", b"S", b"I"])
def test_opcodes_outside_the_allowed_set_are_refused(tmp_path, opcode):
    pkl = b"\x80\x02" + opcode + b"whatever\n."
    with pytest.raises(CheckpointError, match="opcode .* is not allowed"):
        read_torch_zip(payload_zip(tmp_path / "op.pt", pkl))


def test_reduce_of_an_allowed_storage_class_is_refused(tmp_path):
    pkl = b"\x80\x02" + op_global("torch", "FloatStorage") + b")R."
    with pytest.raises(CheckpointError, match="cannot be called"):
        read_torch_zip(payload_zip(tmp_path / "s.pt", pkl))


# --------------------------------------------------------------- broken zips and pickles
def test_missing_storage_entry(tmp_path):
    pkl = state_dict_pickle([("w", tensor_ops("FloatStorage", "7", 2, 0, (2,), (1,)))])
    with pytest.raises(CheckpointError, match="storage '7' is missing"):
        read_torch_zip(write_torch_zip(tmp_path / "m.pt", pkl, {}))


def test_storage_size_disagreeing_with_its_entry(tmp_path):
    with pytest.raises(CheckpointError, match="holds 24 bytes, expected 40"):
        read_torch_zip(simple_zip(tmp_path / "n.pt", numel=10, size=(10,), stride=(1,)))


def test_view_outside_its_storage(tmp_path):
    with pytest.raises(CheckpointError, match="reach element"):
        read_torch_zip(simple_zip(tmp_path / "v.pt", size=(3, 3), stride=(3, 1)))
    with pytest.raises(CheckpointError, match="reach element"):
        read_torch_zip(simple_zip(tmp_path / "o.pt", offset=5, size=(2,), stride=(1,)))


def test_views_that_would_blow_up_memory_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="more memory"):
        read_torch_zip(simple_zip(tmp_path / "z.pt", size=(10 ** 6, 10 ** 6), stride=(0, 0)))


def lie_about_size(path, entry, size):
    """Rewrite the central-directory sizes of ``entry`` to ``size`` (a lying zip)."""
    blob = bytearray(path.read_bytes())
    pos = blob.find(b"PK\x01\x02")
    while pos >= 0:
        n = struct.unpack("<H", blob[pos + 28:pos + 30])[0]
        if bytes(blob[pos + 46:pos + 46 + n]) == entry.encode():
            blob[pos + 20:pos + 28] = struct.pack("<II", size, size)   # compressed, uncompressed
        pos = blob.find(b"PK\x01\x02", pos + 4)
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("size,message", [(4, "holds 4 bytes, expected 24"),
                                          (24 + 10 ** 6, "holds|truncated|Bad|Truncated")])
def test_zip_entry_lying_about_its_size(tmp_path, size, message):
    path = simple_zip(tmp_path / "lie.pt")
    lie_about_size(path, "archive/data/0", size)
    with pytest.raises(CheckpointError, match=message):
        read_torch_zip(path)


def test_zip_pickle_entry_lying_about_its_size(tmp_path):
    path = simple_zip(tmp_path / "lie.pt")
    lie_about_size(path, "archive/data.pkl", 2 ** 31)
    with pytest.raises(CheckpointError, match="data.pkl declares"):
        read_torch_zip(path)


@pytest.mark.parametrize("case", ["no data.pkl", "two data.pkl", "bad byteorder", "not a dict",
                                  "non-tensor value", "truncated pickle", "stack underflow",
                                  "bad persistent id", "not a zip"])
def test_broken_archives_raise_checkpoint_error(tmp_path, case):
    path = tmp_path / "b.pt"
    good = state_dict_pickle([("w", tensor_ops("FloatStorage", "0", 2, 0, (2,), (1,)))])
    store = {"0": np.zeros(2, "<f4").tobytes()}
    if case == "no data.pkl":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/other.pkl", good)
    elif case == "two data.pkl":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("a/data.pkl", good)
            zf.writestr("b/data.pkl", good)
    elif case == "bad byteorder":
        write_torch_zip(path, good, store, byteorder=b"middle")
    elif case == "not a dict":
        write_torch_zip(path, b"\x80\x02K\x05.", store)
    elif case == "non-tensor value":
        write_torch_zip(path, b"\x80\x02}" + op_str("w") + op_int(3) + b"s.", store)
    elif case == "truncated pickle":
        write_torch_zip(path, good[:-10], store)
    elif case == "stack underflow":
        write_torch_zip(path, b"\x80\x02R.", store)
    elif case == "bad persistent id":
        write_torch_zip(path, b"\x80\x02" + op_str("x") + b"Q.", store)
    else:
        path.write_bytes(b"PK\x03\x04" + b"\0" * 50)
    with pytest.raises(CheckpointError):
        npgpt.io.load(path, num_heads=1, residual="seed", gelu="exact")


def test_legacy_torch_files_and_bare_pickles_are_refused_clearly(tmp_path):
    legacy = tmp_path / "old.pt"
    legacy.write_bytes(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19" + b"\0" * 20)
    with pytest.raises(CheckpointError, match="legacy"):
        npgpt.io.load(legacy)
    bare = tmp_path / "bare.pkl"
    bare.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="bare pickle"):
        npgpt.io.load(bare)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world, not a checkpoint")
    with pytest.raises(CheckpointError, match="unrecognised format"):
        npgpt.io.load(junk)


# ------------------------------------------------------------------ no torch needed
BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "safetensors"):
            raise ImportError("blocked: " + name)
        return None
sys.meta_path.insert(0, Block())
import json, numpy as np, npgpt.io
fx = sys.argv[1]
e = np.load(fx + "/checkpoint_expected.npz")
m = npgpt.io.load(fx + "/checkpoint_seed.pt", num_heads=2, residual="seed", gelu="exact")
d = [float(np.abs(m(e["seed:ids"]) - e["seed:logits"]).max())]
for name in ("tiny_gpt2_safetensors", "tiny_gpt2_bin"):
    m = npgpt.io.load(fx + "/" + name)
    d.append(float(np.abs(m(e[name + ":ids"]) - e[name + ":logits"]).max()))
try:
    import torch
    print("TORCH IMPORTED")
except ImportError:
    pass
assert not any(k.split(".")[0] in ("torch", "transformers", "safetensors") and m is not None
               for k, m in sys.modules.items())
print(json.dumps(d))
"""


def test_loading_works_in_a_process_where_torch_cannot_be_imported():
    out = subprocess.run([sys.executable, "-c", BLOCK_TORCH, FIXTURES], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TORCH IMPORTED" not in out.stdout
    diffs = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(diffs) == 3 and max(diffs) <= 1e-5, diffs


# --------------------------------------------------------------------------- live torch
@pytest.mark.torch
@skip_without("torch")
def test_live_torch_save_of_many_dtypes_and_views_reads_back_exactly(tmp_path):
    import torch
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    shared = torch.randn(5, 3)
    sd = {"t": base.t(), "slice": base[1:3, 2:5], "d": torch.randn(3, dtype=torch.float64),
          "h": torch.randn(4).half(), "bf": torch.randn(4).bfloat16(), "i": torch.arange(5),
          "b": torch.tensor([True, False]), "p": torch.nn.Parameter(torch.ones(2)),
          "shared_a": shared, "shared_b": shared, "scalar": torch.tensor(2.5),
          "i32": torch.arange(3, dtype=torch.int32), "u8": torch.arange(3, dtype=torch.uint8)}
    path = tmp_path / "many.pt"
    torch.save(sd, path)
    got = read_torch_zip(path)
    assert list(got) == list(sd)
    for name, value in sd.items():
        want = value.detach().float().numpy() if value.dtype == torch.bfloat16 else value.detach().numpy()
        assert got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want, err_msg=name)


@pytest.mark.torch
@skip_without("torch")
def test_live_seed_model_saved_by_torch_loads_with_matching_logits(tmp_path):
    import torch
    from torch_reference import seed_model
    from helpers import tiny_config
    cfg = tiny_config(residual="seed", gelu="exact")
    ref = seed_model(cfg, seed=7)
    torch.save(ref.state_dict(), tmp_path / "seed.pt")
    model = npgpt.io.load(tmp_path / "seed.pt", num_heads=cfg.num_heads, residual="seed",
                          gelu="exact")
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, cfg.context_length))
    with torch.no_grad():
        want = ref(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(model(ids), want, atol=1e-5, rtol=0)


def test_a_deflated_zip_bomb_is_refused_before_decompressing(tmp_path):
    numel = 2_000_000                                   # 8 MB of zeros, a few KB deflated
    pkl = state_dict_pickle([("w", tensor_ops("FloatStorage", "0", numel, 0, (numel,), (1,)))])
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/data/0", bytes(4 * numel))
    assert path.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match="zip bomb"):
        read_torch_zip(path)


def test_a_small_deflated_archive_is_still_read(tmp_path):
    values = np.arange(6, dtype=np.float32)
    pkl = state_dict_pickle([("w", tensor_ops("FloatStorage", "0", 6, 0, (6,), (1,)))])
    path = tmp_path / "small.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/data/0", values.tobytes())
    np.testing.assert_array_equal(read_torch_zip(path)["w"], values)
