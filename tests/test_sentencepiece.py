"""SentencePieceTokenizer: parity with the ``sentencepiece`` library (recorded, and live when
it imports), with the same model's tokenizer.json (npgpt's HFTokenizer), with llama2.c's
``run.c`` encoder (ported below), the file formats, and hostile files.

The model files: Llama 2's ``tokenizer.model`` and llama2.c's ``tok512.model`` under
``SP_MODELS`` (default ``../shared`` beside the repository; skipped without them), and the
bundled ``npgpt/data/tok512.bin`` (always there).
"""

import hashlib
import json
import os
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt.io import CheckpointError
from npgpt.tokenizers import SentencePieceTokenizer, load_tokenizer, tokenizer_from_dict
from npgpt.tokenizers.sentencepiece import (BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED,
                                            _example, encode_varint, merge_pieces,
                                            read_llama2c_tokenizer, read_model_proto)
from helpers import FIXTURES, has_module

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("SP_MODELS", os.path.join(REPO, "..", "shared"))
MODEL_FILES = {"llama2": os.path.join(SHARED, "tokenizers", "llama2", "tokenizer.model"),
               "tok512": os.path.join(SHARED, "models", "stories260K", "tok512.model")}
TOK512_BIN = os.path.join(REPO, "npgpt", "data", "tok512.bin")
SHORT = 1000                               # no message about a file is longer than this

with open(os.path.join(FIXTURES, "sentencepiece_ids", "expected.json"), encoding="utf-8") as _f:
    EXPECTED = json.load(_f)
TEXTS = EXPECTED["texts"]


def model_file(name):
    """The path of a shared model file whose bytes are those the fixture was made from."""
    path = MODEL_FILES[name]
    if not os.path.exists(path):
        pytest.skip(f"{path} is not there")
    with open(path, "rb") as f:
        if hashlib.sha256(f.read()).hexdigest() != EXPECTED["models"][name]["sha256"]:
            pytest.skip(f"{path} is not the file the fixture was recorded from")
    return path


def tok512_as_model():
    """tok512.model's tokenizer, built from the bundled tok512.bin: the same pieces and
    scores; the .model's normalizer removes extra whitespace and decodes as the library."""
    d = SentencePieceTokenizer.from_llama2c(TOK512_BIN).to_dict()
    d.update(pieces=[p.replace(" ", "▁") for p in d["pieces"]], escape_whitespaces=True,
             remove_extra_whitespaces=True, decoding="sentencepiece",
             unk_surface=" \\342\\201\\207 ")      # tok512.model's, escaped as its trainer wrote it
    return tokenizer_from_dict(d)


def tokenizers_to_check():
    out = [("tok512", tok512_as_model)]
    out.append(("tok512", lambda: SentencePieceTokenizer.from_model_file(model_file("tok512"))))
    out.append(("llama2", lambda: SentencePieceTokenizer.from_model_file(model_file("llama2"))))
    return out


def sentencepiece_lib(path):
    if not has_module("sentencepiece"):
        pytest.skip("sentencepiece is not installed")
    import sentencepiece as spm
    if not hasattr(spm, "SentencePieceProcessor"):          # a folder of that name, not the library
        pytest.skip(f"'sentencepiece' imports {spm!r}, not the library")
    return spm.SentencePieceProcessor(model_file=path)


# ------------------------------------------------------------------ parity, recorded
@pytest.mark.parametrize("name,make", tokenizers_to_check(), ids=["tok512.bin", "tok512.model",
                                                                  "llama2"])
def test_encode_equals_the_recorded_library_ids_on_the_multilingual_corpus(name, make):
    tok = make()
    expected = EXPECTED["models"][name]
    mismatches = [(t, e, tok.encode(t, add_bos=False)) for t, e in zip(TEXTS, expected["ids"])
                  if tok.encode(t, add_bos=False) != e]
    assert sum(map(len, expected["ids"])) > 1500
    assert not mismatches, mismatches[:3]


@pytest.mark.parametrize("name,make", tokenizers_to_check(), ids=["tok512.bin", "tok512.model",
                                                                  "llama2"])
def test_decode_equals_the_recorded_library_text(name, make):
    tok = make()
    expected = EXPECTED["models"][name]
    assert [tok.decode(ids) for ids in expected["ids"]] == expected["decoded"]
    assert [tok.decode(ids) for ids in expected["random_ids"]] == expected["random_decoded"]


def test_the_bundled_tok512_bin_holds_tok512_model():
    from_bin = SentencePieceTokenizer.from_llama2c(TOK512_BIN).to_dict()
    from_model = SentencePieceTokenizer.from_model_file(model_file("tok512")).to_dict()
    assert [p.replace(" ", "▁") for p in from_bin["pieces"]] == from_model["pieces"]
    for key in ("scores", "types", "byte_fallback", "add_dummy_prefix"):
        assert from_bin[key] == from_model[key], key
    assert (from_bin["remove_extra_whitespaces"], from_model["remove_extra_whitespaces"]) == \
        (False, True)


def test_llama2_published_encoding():
    tok = SentencePieceTokenizer.from_model_file(model_file("llama2"))
    assert tok.encode("I believe the meaning of life is") == [1, 306, 4658, 278, 6593, 310,
                                                              2834, 338]


# ------------------------------------------------------------------ parity, live
alphabet = st.sampled_from(list("ab eé\n\t  ▁<>s/0x41") + ["<s>", "</s>", "<unk>", "中", "文",
                                                          "😀", "🇰🇷", "\u200d", "ǅ", "\x00"])
random_text = st.lists(alphabet, max_size=30).map("".join)


@pytest.mark.parametrize("name", ["tok512", "llama2"])
@settings(max_examples=60)
@given(text=random_text)
def test_encode_equals_the_library_on_random_text(name, text):
    path = model_file(name)
    lib = sentencepiece_lib(path)
    tok = _cached(path)
    assert tok.encode(text, add_bos=False) == lib.encode(text)
    assert tok.encode(text) == lib.encode(text, add_bos=True)


@pytest.mark.parametrize("name", ["tok512", "llama2"])
@settings(max_examples=60)
@given(data=st.data())
def test_decode_equals_the_library_on_random_ids(name, data):
    path = model_file(name)
    lib = sentencepiece_lib(path)
    V = lib.get_piece_size()
    ids = data.draw(st.lists(st.one_of(st.integers(0, V - 1), st.integers(0, 258),
                                       st.sampled_from([0xE2 + 3, 0x82 + 3, 0xF0 + 3, 0x9F + 3])),
                             max_size=12))
    assert _cached(path).decode(ids) == lib.decode(ids)


@pytest.mark.parametrize("name", ["tok512", "llama2"])
def test_encode_equals_the_library_on_python_documentation(name):
    """50 kB of English prose, code and tables (``pydoc_data.topics``)."""
    from pydoc_data.topics import topics
    path = model_file(name)
    lib = sentencepiece_lib(path)
    text = "\n".join(topics[k] for k in sorted(topics))[:50_000]
    assert _cached(path).encode(text, add_bos=False) == lib.encode(text)


_CACHE = {}


def _cached(path):
    if path not in _CACHE:
        _CACHE[path] = SentencePieceTokenizer.from_model_file(path)
    return _CACHE[path]


def test_the_written_model_proto_is_read_by_the_library():
    tok = _example()
    if not has_module("sentencepiece"):
        pytest.skip("sentencepiece is not installed")
    import sentencepiece as spm
    lib = spm.SentencePieceProcessor(model_proto=tok.to_model_proto())
    for text in ["hello world", "  hé\nworld ", "<s>", ""]:
        assert lib.encode(text) == tok.encode(text, add_bos=False)
    assert SentencePieceTokenizer.from_model_file(_write(tok.to_model_proto())) == tok


def _write(data, name="written.bin"):
    import tempfile
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


# ------------------------------------------------------------------ parity with tokenizer.json
def hf_spec(tok):
    """The tokenizer.json transformers' LlamaConverter (legacy) makes of a SentencePiece BPE
    model: merges from transformers' ``generate_merges`` (by score), byte fallback, the
    normalizer Prepend("▁") + Replace(" ", "▁") and the decoder that strips the first space."""
    import importlib
    generate_merges = importlib.import_module("transformers.convert_slow_tokenizer").generate_merges
    pieces = tok.pieces()
    vocab = {p: i for i, p in enumerate(pieces)}
    scores = {p: tok.score(i) for i, p in enumerate(pieces) if tok.piece_type(i) == "normal"}
    merges = [list(m) for m in generate_merges(vocab, scores)]
    added = [{"id": i, "content": p, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}
             for i, p in enumerate(pieces) if tok.piece_type(i) in ("control", "unknown")]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None, "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges}}


@pytest.mark.skipif(not has_module("transformers"), reason="transformers is not installed")
@pytest.mark.parametrize("name", ["tok512", "llama2"])
def test_encode_equals_the_same_models_tokenizer_json(name):
    """The HF reader runs the same model from its tokenizer.json; on texts without the
    control pieces' spelling (the tokenizer.json matches <s> as a special token, the library
    does not) they agree, and each text decodes the same."""
    from npgpt.tokenizers import HFTokenizer
    tok = SentencePieceTokenizer.from_model_file(model_file(name))
    if tok.remove_extra_whitespaces:            # a tokenizer.json has no such normalizer
        d = tok.to_dict()
        d["remove_extra_whitespaces"] = False
        tok = tokenizer_from_dict(d)
    hf = HFTokenizer(hf_spec(tok))
    texts = [t for t in TEXTS if not any(s in t for s in ("<s>", "</s>", "<unk>"))]
    compared = 0
    for text in texts:
        ids = tok.encode(text, add_bos=False)
        assert hf.encode(text, add_special_tokens=False) == ids, text
        assert hf.decode(ids) == tok.decode(ids), text
        compared += len(ids)
    assert compared > 1500


# ------------------------------------------------------------------ llama2.c's run.c
def run_c_encode(pieces, scores, text, bos=True):
    """llama2.c's ``encode`` (run.c) in Python: the reference for from_llama2c."""
    vocab = {}
    for i, p in enumerate(pieces):
        vocab.setdefault(p, i)
    tokens = [1] if bos else []
    if text:
        tokens.append(vocab[" "])
    for ch in text:
        raw = ch.encode("utf-8")
        if raw.decode() in vocab:
            tokens.append(vocab[raw.decode()])
        else:
            tokens.extend(b + 3 for b in raw)
    while True:
        best = (-1e10, -1, -1)
        for i in range(len(tokens) - 1):
            j = vocab.get(pieces[tokens[i]] + pieces[tokens[i + 1]], -1)
            if j != -1 and scores[j] > best[0]:
                best = (scores[j], j, i)
        if best[2] == -1:
            return tokens
        tokens[best[2]:best[2] + 2] = [best[1]]


def run_c_decode(pieces, ids):
    """llama2.c's decode + safe_printf over a whole id sequence, as bytes."""
    out = b""
    for prev, token in zip(ids, ids[1:]):
        piece = pieces[token]
        if prev == 1 and piece.startswith(" "):
            piece = piece[1:]
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            raw = bytes([int(piece[3:5], 16)])
        else:
            raw = piece.encode()
        if len(raw) == 1 and not (32 <= raw[0] < 127 or raw[0] in b" \t\n\v\f\r"):
            continue
        out += raw
    return out


def raw_llama2c_pieces(path):
    with open(path, "rb") as f:
        data = f.read()
    pos, pieces, scores = 4, [], []
    while pos < len(data):
        score, length = struct.unpack_from("<fi", data, pos)
        pieces.append(data[pos + 8:pos + 8 + length].decode())
        scores.append(score)
        pos += 8 + length
    return pieces, scores


def test_from_llama2c_encodes_as_run_c_on_the_corpus():
    pieces, scores = raw_llama2c_pieces(TOK512_BIN)
    tok = SentencePieceTokenizer.from_llama2c(TOK512_BIN)
    compared = 0
    for text in TEXTS:
        expected = run_c_encode(pieces, scores, text)
        assert tok.encode(text) == expected, text
        compared += len(expected)
    assert compared > 3000


@settings(max_examples=60)
@given(text=random_text)
def test_from_llama2c_decodes_as_run_c_prints(text):
    """Where run.c prints every byte (no lone non-printable byte piece), npgpt's text is
    run.c's output."""
    pieces, _ = raw_llama2c_pieces(TOK512_BIN)
    tok = SentencePieceTokenizer.from_llama2c(TOK512_BIN)
    ids = tok.encode(text)
    if any(tok.piece_type(i) == "byte" and int(tok.id_to_token(i)[3:5], 16) >= 0x80
           for i in ids) or "\x00" in text:
        return                                   # run.c's safe_printf drops those bytes
    assert tok.decode(ids).encode() == run_c_decode(pieces, ids)


def test_llama2c_decoding_keeps_the_space_of_new_tokens_and_drops_it_after_bos():
    tok = SentencePieceTokenizer.from_llama2c(TOK512_BIN)
    ids = tok.encode("Once upon a time")
    assert tok.decode(ids) == "Once upon a time"
    assert tok.decode(ids[3:]) == " a time"                       # llama2.c's rule
    assert tok512_as_model().decode(ids[3:]) == "a time"         # the library's rule
    assert tok.decode([1] + ids[3:]) == "a time"


# ------------------------------------------------------------------ rules and invariants
@settings(max_examples=80)
@given(text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581"),
                    max_size=40))
def test_decode_inverts_encode_for_text_without_the_space_symbol(text):
    tok = SentencePieceTokenizer.from_llama2c(TOK512_BIN)
    assert tok.decode(tok.encode(text)) == text
    library_like = tokenizer_from_dict({**tok512_as_model().to_dict(),
                                        "remove_extra_whitespaces": False})
    assert library_like.decode(library_like.encode(text, add_bos=False)) == text


@settings(max_examples=60)
@given(text=st.text(alphabet="abeht ▁", max_size=30))
def test_chunked_merging_equals_merging_the_whole_text(text):
    """The fast path (chunks cut before a "▁" that follows another character) gives the ids
    of the merge loop run over the whole normalized text."""
    tok = tok512_as_model()
    normalized = tok.normalize(text)
    whole = merge_pieces(list(normalized), tok._mergeable) if normalized else []
    assert tok.pieces(tok.encode(text, add_bos=False)) == whole


def test_merges_take_the_highest_score_first_and_the_leftmost_on_ties():
    assert merge_pieces(list("abc"), {"ab": -2.0, "bc": -1.0}) == ["a", "bc"]
    assert merge_pieces(list("abc"), {"ab": -1.0, "bc": -2.0}) == ["ab", "c"]
    assert merge_pieces(list("aaaa"), {"aa": 0.0}) == ["aa", "aa"]
    assert merge_pieces(list("aaa"), {"aa": 0.0, "aaa": 1.0}) == ["aaa"]


def small(types_of=None, **options):
    """A tiny vocabulary: <unk>, <s>, </s>, the byte pieces, then normal pieces."""
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256
    words = ["▁", "a", "b", "c", "ab", "▁ab", "abc", "<u>"]
    kinds = [NORMAL] * len(words)
    for piece, kind in (types_of or {}).items():
        kinds[words.index(piece)] = kind
    return SentencePieceTokenizer(pieces + words, [0.0] * 259 + [-float(i) for i in range(8)],
                                  types + kinds, **options)


def test_unused_pieces_are_split_back_and_user_defined_pieces_match_whole():
    tok = small({"ab": UNUSED})          # "ab" is a step on the way to "▁ab", never an output
    assert tok.pieces(tok.encode("abc", add_bos=False)) == ["▁ab", "c"]
    assert tok.pieces(tok.encode("cab", add_bos=False)) == ["▁", "c", "a", "b"]
    tok = small({"<u>": USER_DEFINED})
    assert tok.pieces(tok.encode("a<u>b", add_bos=False)) == ["▁", "a", "<u>", "b"]
    assert tok.special_tokens == {"<s>": 1, "</s>": 2, "<u>": 266}


def test_unknown_characters_without_byte_fallback_become_one_unknown_id_per_run():
    tok = small(byte_fallback=False)
    assert tok.encode("ab中文c文", add_bos=False) == [264, 0, 262, 0]
    assert tok.decode([264, 0, 262, 0]) == "ab ⁇ c ⁇ "


@pytest.mark.skipif(not has_module("sentencepiece"), reason="sentencepiece is not installed")
def test_small_vocabularies_encode_as_the_library():
    import sentencepiece as spm
    for tok in (small({"ab": UNUSED}), small({"<u>": USER_DEFINED}), small(byte_fallback=False)):
        if not tok.byte_fallback:              # the library refuses byte pieces without it
            d = tok.to_dict()
            keep = [i for i, t in enumerate(d["types"]) if t != BYTE]
            tok = SentencePieceTokenizer([d["pieces"][i] for i in keep],
                                         [d["scores"][i] for i in keep],
                                         [d["types"][i] for i in keep])
        lib = spm.SentencePieceProcessor(model_proto=tok.to_model_proto())
        for text in ("abc", "cab", "a<u>b", "ab中文c文", "  abcab ab"):
            assert tok.encode(text, add_bos=False) == lib.encode(text), (text, tok.pieces())
            assert tok.decode(lib.encode(text)) == lib.decode(lib.encode(text))


def test_encode_options_and_errors():
    tok = small()
    assert tok.encode("ab", add_eos=True) == [1, 264, 2]
    assert tok.encode("") == [1] and tok.encode("", add_bos=False) == []
    with pytest.raises(ValueError, match="lone surrogate"):
        tok.encode("a\ud800")
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([0, 9999])
    with pytest.raises(ValueError, match="no BOS"):
        small(bos_id=None).encode("a")
    with pytest.raises(ValueError, match="exactly one piece of type unknown"):
        SentencePieceTokenizer(["a"], [0.0], [NORMAL])
    with pytest.raises(ValueError, match="are both"):
        SentencePieceTokenizer(["<unk>", "a", "a"], [0.0] * 3, [UNKNOWN, NORMAL, NORMAL])
    with pytest.raises(ValueError, match="<0x01> is missing"):
        SentencePieceTokenizer(["<unk>", "<0x00>"], [0.0, 0.0], [UNKNOWN, BYTE])
    with pytest.raises(ValueError, match="finite"):
        SentencePieceTokenizer(["<unk>", "a"], [0.0, float("nan")], [UNKNOWN, NORMAL])


def test_token_bytes_are_what_each_token_adds_inside_a_text():
    tok = SentencePieceTokenizer.from_llama2c(TOK512_BIN)
    ids = tok.encode("Once upon a time, é!")
    assert b"".join(tok.token_bytes(i) for i in ids) == b" Once upon a time, \xc3\xa9!"


def test_stop_strings_work_with_a_sentencepiece_model():
    model = npgpt.load("stories260K")
    out = npgpt.generate(model, np.array(model.tokenizer.encode("Once upon a")),
                         max_new_tokens=40, stop_strings=["girl"])
    text = model.tokenizer.decode(out.sequences[0].tolist())
    assert text.endswith("girl") and text.startswith("Once upon a time")


def test_to_dict_round_trips_and_a_saved_model_keeps_its_tokenizer(tmp_path):
    model = npgpt.load("stories260K")
    tok = model.tokenizer
    assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))) == tok
    model.save(tmp_path / "m.safetensors")
    back = npgpt.load(tmp_path / "m.safetensors")
    assert back.tokenizer == tok and back.tokenizer.decoding == "llama2c"
    tok.save(tmp_path / "tok.json")
    assert load_tokenizer(tmp_path / "tok.json") == tok


def test_load_tokenizer_recognises_model_and_bin_files(tmp_path):
    assert load_tokenizer(TOK512_BIN).decoding == "llama2c"
    path = tmp_path / "x.model"
    path.write_bytes(_example().to_model_proto())
    assert load_tokenizer(path) == _example()
    path = tmp_path / "tokenizer.bin"
    path.write_bytes(_example().to_llama2c())
    assert load_tokenizer(path).encode("hello world") == [1, 274, 276]


# ------------------------------------------------------------------ GGUF metadata
def gguf_metadata(tok, **changes):
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tok.pieces(),
            "tokenizer.ggml.scores": [tok.score(i) for i in range(tok.vocab_size)],
            "tokenizer.ggml.token_type": [tok._types[i] for i in range(tok.vocab_size)],
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": True,
            "tokenizer.ggml.add_eos_token": False}
    meta.update(changes)
    return meta


def test_gguf_metadata_gives_the_tokenizer_of_the_same_vocabulary():
    tok = tok512_as_model()
    gguf = SentencePieceTokenizer.from_gguf_metadata(gguf_metadata(tok))
    tok = tokenizer_from_dict({**tok.to_dict(), "remove_extra_whitespaces": False})
    assert all(gguf.encode(text) == tok.encode(text) for text in TEXTS)
    assert gguf.decoding == "sentencepiece" and gguf.decode(tok.encode("Once upon")[2:]) == "upon"
    plain = SentencePieceTokenizer.from_gguf_metadata(gguf_metadata(
        tok, **{"tokenizer.ggml.add_bos_token": False, "tokenizer.ggml.add_space_prefix": False,
                "tokenizer.ggml.add_eos_token": True}))
    ids = plain.encode("Once upon")
    assert ids[-1] == 2 and ids[0] != 1 and not plain.pieces(ids)[0].startswith("▁")


def test_gguf_user_defined_tokens_are_matched_in_text():
    tok = tok512_as_model()
    meta = gguf_metadata(tok)
    meta["tokenizer.ggml.tokens"] = tok.pieces() + ["<|im_start|>"]
    meta["tokenizer.ggml.scores"] = meta["tokenizer.ggml.scores"] + [0.0]
    meta["tokenizer.ggml.token_type"] = meta["tokenizer.ggml.token_type"] + [USER_DEFINED]
    gguf = SentencePieceTokenizer.from_gguf_metadata(meta)
    ids = gguf.encode("hi<|im_start|>there", add_bos=False)
    assert 512 in ids and gguf.decode(ids) == "hi<|im_start|>there"


@pytest.mark.skipif(not has_module("gguf"), reason="gguf is not installed")
def test_gguf_metadata_as_the_gguf_package_writes_and_reads_it(tmp_path):
    """A GGUF file written by gguf-py's GGUFWriter with tok512's vocabulary, its metadata read
    back by GGUFReader: the same tokenizer."""
    import gguf
    tok = tok512_as_model()
    writer = gguf.GGUFWriter(str(tmp_path / "t.gguf"), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tok.pieces())
    writer.add_token_scores([tok.score(i) for i in range(tok.vocab_size)])
    writer.add_token_types([tok._types[i] for i in range(tok.vocab_size)])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    fields = gguf.GGUFReader(str(tmp_path / "t.gguf")).fields
    metadata = {k: f.contents() for k, f in fields.items() if k.startswith("tokenizer.")}
    from_gguf = SentencePieceTokenizer.from_gguf_metadata(metadata)
    same = tokenizer_from_dict({**tok.to_dict(), "remove_extra_whitespaces": False})
    assert all(from_gguf.encode(text) == same.encode(text) for text in TEXTS)


@pytest.mark.parametrize("change,match", [
    ({"tokenizer.ggml.bos_token_id": 600}, "bos_token_id must be an id below 512"),
    ({"tokenizer.ggml.model": "gpt2"}, "tokenizer.ggml.model"),
    ({"tokenizer.ggml.scores": [0.0]}, "one length"),
    ({"tokenizer.ggml.token_type": "x"}, "token_type"),
    ({"tokenizer.ggml.add_bos_token": 1}, "add_bos_token"),
])
def test_gguf_metadata_errors_name_the_key(change, match):
    tok = tok512_as_model()
    with pytest.raises(CheckpointError, match=match):
        SentencePieceTokenizer.from_gguf_metadata(gguf_metadata(tok, **change))


# ------------------------------------------------------------------ the files, hostile
def delimited(number, body):
    return encode_varint(number << 3 | 2) + encode_varint(len(body)) + body


def refused(call, *args):
    with pytest.raises(CheckpointError) as info:
        call(*args)
    assert 0 < len(str(info.value)) < SHORT
    return str(info.value)


def test_a_unigram_model_and_a_normalization_rule_are_refused_by_name(tmp_path):
    good = _example().to_model_proto()
    path = tmp_path / "unigram.model"
    path.write_bytes(good + delimited(2, b"\x18\x01"))           # trainer_spec.model_type = 1
    assert "model_type is UNIGRAM" in refused(SentencePieceTokenizer.from_model_file, path)
    path.write_bytes(good + delimited(3, delimited(1, b"nmt_nfkc") + delimited(2, b"\x01\x02")))
    assert "precompiled_charsmap" in refused(SentencePieceTokenizer.from_model_file, path)
    path.write_bytes(good + delimited(2, b"\xc0\x01\x01"))       # treat_whitespace_as_suffix
    assert "treat_whitespace_as_suffix" in refused(SentencePieceTokenizer.from_model_file, path)


@pytest.mark.parametrize("data,match", [
    (b"\x0a\x05ab", "ModelProto.pieces: length 5 runs past the end"),
    (b"\x0a" + b"\xff" * 11, "varint longer than 10 bytes"),
    (b"\x0a\xff\xff", "truncated varint"),
    (b"\x0a" + encode_varint(2 ** 62) + b"x", "length 4611686018427387904 runs past the end"),
    (b"\x0a\x05\x0a\x01a\x15\x00", "pieces[0].score: truncated"),
    (b"\x0a\x05\x0a\x01a\x18\x07", "pieces[0].type: 7 is not a piece type"),
    (b"\x0a\x03\x0a\x01\xff", "pieces[0].piece: not valid UTF-8"),
    (b"\x0b\x00", "wire type 3"),
    (b"\x00", "field number 0"),
])
def test_malformed_model_files_name_the_field(data, match):
    assert match in refused(read_model_proto, data)


@pytest.mark.parametrize("data,match", [
    (b"\x01", "too short"),
    (struct.pack("<i", -1), "max_token_length -1"),
    (struct.pack("<ifi", 5, 0.0, 9) + b"abc", "length 9 is not in [0, max_token_length=5]"),
    (struct.pack("<ifi", 5, 0.0, 4) + b"ab", "length 4 runs past the end"),
    (struct.pack("<ifi", 5, 0.0, 1) + b"\xff", "not valid UTF-8"),
    (struct.pack("<if", 5, 0.0), "truncated"),
])
def test_malformed_llama2c_tokenizers_name_the_field(data, match):
    assert match in refused(read_llama2c_tokenizer, data)


def test_every_truncation_of_a_model_file_is_refused_or_read(tmp_path):
    data = _example().to_model_proto()
    for cut in range(0, len(data), 7):
        path = tmp_path / "cut.model"
        path.write_bytes(data[:cut])
        try:
            SentencePieceTokenizer.from_model_file(path)
        except CheckpointError as e:
            assert len(str(e)) < SHORT


@settings(max_examples=150)
@given(data=st.data())
def test_fuzzed_model_and_bin_files_raise_only_a_short_checkpoint_error(data):
    """Random byte edits of a valid file: read, or one CheckpointError; memory bounded."""
    for original, read in ((_example().to_model_proto(), read_model_proto),
                           (_example().to_llama2c(), read_llama2c_tokenizer)):
        raw = bytearray(original)
        for _ in range(data.draw(st.integers(1, 6))):
            pos = data.draw(st.integers(0, len(raw) - 1))
            raw[pos] = data.draw(st.integers(0, 255))
        raw = bytes(raw[:data.draw(st.integers(0, len(raw)))])
        tracemalloc.start()
        try:
            read(raw)
        except CheckpointError as e:
            assert len(str(e)) < SHORT
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 50 * len(original) + 10 ** 6


def test_a_huge_length_is_refused_before_anything_is_allocated():
    data = b"\x0a" + encode_varint(2 ** 40) + b"\x0a\x01a"
    tracemalloc.start()
    try:
        refused(read_model_proto, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 ** 6
