"""Hugging Face ``tokenizer.json`` files: npgpt's reader against the ``tokenizers`` library.

``tests/fixtures/hf_tokenizers/`` holds six small tokenizers trained with the library's BPE
trainer, each set up as one family's real file (see make_hf_tokenizer_fixtures.py): Llama 3
and Qwen2 (byte-level, Split with a registered regex), SmolLM / GPT-2 (ByteLevel's own
regex), Llama 2 (legacy SentencePiece normalizer, byte fallback), Mistral (Metaspace,
``prepend_scheme="first"``) and a Metaspace ``"always"`` one with lstrip / rstrip /
single_word added tokens. Parity runs at two levels:

1. always: the ids the library gave for every text of ``corpus.json`` (a multilingual
   corpus with code, emoji, odd whitespace and special tokens), and its decoded texts;
2. when ``tokenizers`` imports: the same files live, on edge cases and on hypothesis text.
"""

import json
import os
import time
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt.io import CheckpointError
from npgpt.tokenizers.hf import HFTokenizer, _example, load_tokenizer_json

from helpers import FIXTURES

HERE = os.path.join(FIXTURES, "hf_tokenizers")
NAMES = ["llama3", "qwen2", "smollm", "llama2", "mistral", "metaspace_always"]
BYTE_LEVEL = ["llama3", "qwen2", "smollm"]
SENTENCEPIECE = ["llama2", "mistral", "metaspace_always"]
SPECIALS = ["<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>", "<|end_header_id|>",
            "<|im_start|>", "<|im_end|>", "<|endoftext|>", "[INST]", "[/INST]", "<mask>",
            "<|user|>", "word", "Ångström"]
EDGE_TEXTS = [
    "", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u200b", "▁", "▁▁x ▁", " ▁ hello",
    "<s>", "<s><s>", " <s> ", "<s>hi</s>", "x<unk>y", "<|begin_of_text|><|begin_of_text|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n", "<|im_start",
    "<mask>", "   <mask>   ", "a<mask>b", "<|user|>", "<|user|>\n\n x", "word", "words word",
    "_word_", "word\u0301", "1word", "½word", "A\u030a", "Å", "\u212b", "ﬁ", "ᄀ\u1161",
    "1234567890123", "٣٤٥", "It'S I'M you'RE", "''", "'s", "\r\r\n\n \n", "a\u2028b",
    "x" * 300, "日本語" * 50, "👨\u200d👩\u200d👧\u200d👦" * 5, "\U0001F600\U0001F3FD",
    "\x00\x01\x7f",
    "\ufffd", "\U0010FFFF", "\uFEFF start", "<0x41>", "Ġ", "ĠĠ", "  leading and trailing  ",
]


def fixture_spec(name):
    with open(os.path.join(HERE, f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


def fixture(name):
    return load_tokenizer_json(os.path.join(HERE, f"{name}.json"))


@pytest.fixture(scope="module")
def corpus():
    with open(os.path.join(HERE, "corpus.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def expected():
    with open(os.path.join(HERE, "expected.json"), encoding="utf-8") as f:
        return json.load(f)


_TOKENIZERS = {}


def ours(name):
    if name not in _TOKENIZERS:
        _TOKENIZERS[name] = fixture(name)
    return _TOKENIZERS[name]


def theirs(name):
    tokenizers = pytest.importorskip("tokenizers")
    key = ("lib", name)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = tokenizers.Tokenizer.from_file(os.path.join(HERE, f"{name}.json"))
    return _TOKENIZERS[key]


# ----------------------------------------------------------------------------------------
# 1. Recorded parity: no tokenizers library needed
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_recorded_ids_match_every_corpus_text(name, corpus, expected):
    tok, want = ours(name), expected[name]
    got = [tok.encode(t) for t in corpus]
    got_plain = [tok.encode(t, add_special_tokens=False) for t in corpus]
    mismatches = [t for t, a, b in zip(corpus, got, want["ids"]) if a != b]
    assert mismatches == []
    assert got_plain == want["ids_no_special"]
    assert tok.encode("\n".join(corpus)) == want["whole"]
    assert sum(map(len, got)) > 1000                           # the texts say something
    assert [tok.decode(ids) for ids in want["ids"]] == want["decoded"]


@pytest.mark.parametrize("name", NAMES)
def test_encode_returns_python_ints_and_decode_takes_arrays(name, corpus):
    tok = ours(name)
    ids = tok.encode(corpus[0])
    assert type(ids) is list and all(type(i) is int for i in ids)
    assert tok.decode(np.array(ids, dtype=np.int64)) == tok.decode(ids)
    assert max(ids) < tok.vocab_size == len(tok)


def test_bos_comes_from_the_template():
    assert ours("llama3").encode("hi")[0] == ours("llama3").token_to_id("<|begin_of_text|>")
    assert ours("llama2").encode("hi")[0] == 1 == ours("llama2").token_to_id("<s>")
    assert ours("mistral").encode("")[:1] == [1]
    assert ours("qwen2").encode("hi") == ours("qwen2").encode("hi", add_special_tokens=False)
    for name in NAMES:
        assert ours(name).encode("", add_special_tokens=False) == []


def test_special_tokens_are_split_out_and_skipped_on_decode():
    tok = ours("qwen2")
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == tok.special_tokens["<|im_start|>"]
    assert ids[-1] == tok.special_tokens["<|im_end|>"]
    assert tok.decode(ids) == "user\nhi"
    assert tok.decode(ids, skip_special_tokens=False) == "<|im_start|>user\nhi<|im_end|>"
    # "Ångström" is an ordinary added token matched after NFC. Decoding it, ByteLevel reads
    # "Å" and "ö" as the bytes 0xC5 and 0xF6 (their byte-level spelling), as the library does
    decomposed = "A\u030angstro\u0308m"
    assert tok.encode(decomposed) == [tok.token_to_id("Ångström")]
    assert tok.decode(tok.encode(decomposed)) == "\ufffdngstr\ufffdm"


def test_sentencepiece_byte_fallback_spells_unknown_characters_as_bytes():
    tok = ours("llama2")
    ids = tok.encode("ꙮ", add_special_tokens=False)       # a character the vocabulary lacks
    assert [tok.id_to_token(i) for i in ids][-3:] == ["<0xEA>", "<0x99>", "<0xAE>"]
    assert tok.decode(ids) == "ꙮ"
    assert tok.decode(ids[-2:]) == "\ufffd\ufffd"               # half a character


def normalized(name, text):
    """``text`` after the tokenizer's normalizer (Qwen2's NFC)."""
    return unicodedata.normalize("NFC", text) if name == "qwen2" else text


def _plain(texts):
    """The texts without added tokens or ``"▁"`` (which SentencePiece files decode as a space)."""
    return [t for t in texts if not any(s in t for s in SPECIALS) and "▁" not in t]


@pytest.mark.parametrize("name", BYTE_LEVEL)
def test_byte_level_round_trip_on_the_corpus(name, corpus):
    tok = ours(name)
    texts = [t for t in corpus if "Ångström" not in t] if name == "qwen2" else corpus
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids, skip_special_tokens=False) == normalized(name, text)
        assert tok.decode(tok.encode(text), skip_special_tokens=False) == tok.decode(
            tok.encode(text, add_special_tokens=True), skip_special_tokens=False)


@pytest.mark.parametrize("name", SENTENCEPIECE)
def test_sentencepiece_round_trip_without_added_tokens(name, corpus):
    """Llama 2's legacy normalizer always puts a "▁" in front, which the decoder strips; the
    Metaspace ones do not when the text already starts with a space, so that space is lost
    (as in the library)."""
    tok = ours(name)
    texts = _plain(corpus)
    assert len(texts) > 30
    for text in texts:
        lost = name != "llama2" and text.startswith(" ")
        assert tok.decode(tok.encode(text)) == (text[1:] if lost else text)


@pytest.mark.parametrize("name", NAMES)
def test_token_bytes_join_to_the_text_for_stop_strings(name, corpus):
    """token_bytes reads each token as if inside a text: byte-level tokens give the text's
    bytes, SentencePiece ones the text with its leading "▁" as a space."""
    tok = ours(name)
    for text in _plain(corpus):
        ids = tok.encode(text, add_special_tokens=False)
        joined = b"".join(tok.token_bytes(i) for i in ids).decode("utf-8")
        if name in BYTE_LEVEL:
            assert joined == tok.decode(ids) == normalized(name, text)
        elif name == "llama2" or not text.startswith(" "):
            assert joined == (" " + text if text else "")
        else:
            assert joined == text


def test_stop_strings_work_with_an_hf_tokenizer():
    tok = ours("llama3")
    cfg = npgpt.GPTConfig(vocab_size=tok.vocab_size, context_length=32, d_model=16,
                          num_heads=2, num_layers=1)
    model = npgpt.GPT(cfg, seed=0)
    model.tokenizer = tok
    prompt = np.array([tok.encode("The")], dtype=np.int64)
    free = npgpt.generate(model, prompt, max_new_tokens=12, do_sample=True, seed=3)
    text = tok.decode(free.sequences[0, prompt.shape[1]:], skip_special_tokens=False)
    assert len(text) >= 2
    stop = text[len(text) // 2:len(text) // 2 + 1]
    out = npgpt.generate(model, prompt, max_new_tokens=12, do_sample=True, seed=3,
                         stop_strings=[stop])
    new = tok.decode(out.sequences[0, prompt.shape[1]:], skip_special_tokens=False)
    assert stop in new and len(new) <= len(text)


def test_to_dict_round_trip_and_equality():
    tok = ours("mistral")
    again = HFTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again == tok and again.encode("Hello [INST] x") == tok.encode("Hello [INST] x")
    assert again != ours("llama2")
    with pytest.raises(ValueError, match="'hf'"):
        HFTokenizer.from_dict({"type": "bpe", "tokenizer_json": {}})


# ----------------------------------------------------------------------------------------
# 2. Live parity against the tokenizers library
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_live_parity_on_edge_cases(name):
    lib, tok = theirs(name), ours(name)
    texts = EDGE_TEXTS + [a + b for a in SPECIALS for b in (" x", "x", "\n")]
    for text in texts:
        for add in (True, False):
            want = lib.encode(text, add_special_tokens=add).ids
            assert tok.encode(text, add_special_tokens=add) == want, (text, add)
        for skip in (True, False):
            assert tok.decode(want, skip_special_tokens=skip) == lib.decode(
                want, skip_special_tokens=skip), text


@pytest.mark.parametrize("name", NAMES)
def test_live_decode_of_arbitrary_ids(name):
    lib, tok = theirs(name), ours(name)
    rng = np.random.default_rng(0)
    for _ in range(200):
        ids = rng.integers(0, tok.vocab_size, size=int(rng.integers(1, 12))).tolist()
        for skip in (True, False):
            assert tok.decode(ids, skip_special_tokens=skip) == lib.decode(
                ids, skip_special_tokens=skip), ids


# Characters assigned in Python's Unicode database; a character assigned later than that
# may be classed differently by the library's regex engine (see npgpt.tokenizers.hf).
_CHARS = st.characters(exclude_categories=("Cs", "Cn"))
_PIECES = st.one_of(st.text(_CHARS, max_size=12), st.sampled_from(SPECIALS),
                    st.sampled_from([" ", "  ", "\n", "\r\n", "\t", "▁", "'s", "123456"]),
                    st.text(st.sampled_from("ab ▁\n'0Å\u030a"), max_size=8))
_TEXTS = st.lists(_PIECES, max_size=8).map("".join)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=60)
@given(text=_TEXTS)
def test_live_parity_on_random_text(name, text):
    lib, tok = theirs(name), ours(name)
    assert tok.encode(text) == lib.encode(text).ids
    assert tok.encode(text, add_special_tokens=False) == lib.encode(
        text, add_special_tokens=False).ids


@pytest.mark.parametrize("name", ["llama3", "smollm"])
@given(text=st.text(_CHARS, max_size=40))
def test_byte_level_round_trip_on_random_text(name, text):
    tok = ours(name)
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=False) == tok.decode(ids) == text


def _small_bpe(byte_fallback, fuse_unk, unk="<unk>"):
    vocab = {"<unk>": 0, "a": 1, "b": 2, "ab": 3, "▁": 4, "▁a": 5, "<0x63>": 6}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": None, "pre_tokenizer": {"type": "Metaspace", "replacement": "▁",
                                                  "prepend_scheme": "always", "split": True},
            "post_processor": None, "decoder": None,
            "model": {"type": "BPE", "dropout": None, "unk_token": unk, "fuse_unk": fuse_unk,
                      "byte_fallback": byte_fallback, "vocab": vocab,
                      "merges": [["a", "b"], ["▁", "a"]]}}


@pytest.mark.parametrize("byte_fallback", [False, True])
@pytest.mark.parametrize("fuse_unk", [False, True])
@pytest.mark.parametrize("unk", ["<unk>", None])
@settings(max_examples=25)
@given(text=st.text(st.sampled_from("abcx▁ é"), max_size=12))
def test_live_unknown_characters(byte_fallback, fuse_unk, unk, text):
    tokenizers = pytest.importorskip("tokenizers")
    spec = _small_bpe(byte_fallback, fuse_unk, unk)
    lib = tokenizers.Tokenizer.from_str(json.dumps(spec))
    assert HFTokenizer(spec).encode(text) == lib.encode(text).ids


# ----------------------------------------------------------------------------------------
# 3. Hostile or unsupported files: always a ValueError naming the problem, never a hang
# ----------------------------------------------------------------------------------------

def test_truncated_json_file_is_a_value_error(tmp_path):
    raw = open(os.path.join(HERE, "llama2.json"), "rb").read()
    for cut in (0, 1, 100, len(raw) // 2, len(raw) - 1):
        path = tmp_path / f"cut{cut}.json"
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="not valid UTF-8 JSON"):
            load_tokenizer_json(str(path))
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError):
        load_tokenizer_json(str(tmp_path / "bad.json"))


@pytest.mark.parametrize("model_type", ["WordPiece", "Unigram", "WordLevel"])
def test_other_models_are_refused_by_name(model_type):
    spec = fixture_spec("llama2")
    spec["model"]["type"] = model_type
    with pytest.raises(ValueError, match=f"type '{model_type}' is not supported"):
        load_tokenizer_json(spec)


def test_an_unknown_regex_is_refused_naming_it():
    spec = fixture_spec("llama3")
    spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"(?:a|a)*b|\p{L}+"
    with pytest.raises(ValueError, match=r"the regex '\(\?:a\|a\)\*b\|\\\\p\{L\}\+' is not a "
                                         r"registered pattern"):
        load_tokenizer_json(spec)


@pytest.mark.parametrize("path, value, message", [
    (("model", "vocab"), ["a", "b"], "model.vocab must be dict"),
    (("model", "vocab", "a"), "7", "the id of 'a' must be an integer"),
    (("model", "merges"), [[1, 2]], r"merges\[0\] must be a pair of strings"),
    (("model", "merges"), ["a b c"], r"merges\[0\] must be two tokens"),
    (("model", "merges"), ["zz qq"], "'zz' is not in the vocabulary"),
    (("model", "byte_fallback"), "yes", "byte_fallback must be bool"),
    (("model", "dropout"), 0.1, "BPE dropout"),
    (("added_tokens",), {"id": 0}, "added_tokens must be list"),
    (("added_tokens", 0, "id"), 5, "has id 5, but the tokenizers library gives it id 0"),
    (("added_tokens", 0, "lstrip"), 1, "lstrip must be bool"),
    (("normalizer",), {"type": "Lowercase"}, "type 'Lowercase' is not supported"),
    (("normalizer",), "NFC", "normalizer must be an object"),
    (("decoder", "decoders", 3, "start"), -1, "start must be >= 0"),
    (("post_processor", "single"), [{"SpecialToken": {"id": "<nope>"}}], "single"),
    (("truncation",), {"max_length": 5}, "neither truncates nor pads"),
    (("version",), "2.0", "version '2.0' is not supported"),
    (("surprise",), 1, "unknown field"),
])
def test_wrong_types_and_values_name_the_field(path, value, message):
    spec = fixture_spec("llama2")
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError, match=message):
        load_tokenizer_json(spec)


def test_top_level_and_deep_nesting():
    for value in (None, [], "x", 3):
        with pytest.raises(ValueError, match="holds an object"):
            HFTokenizer(value)
    with pytest.raises(TypeError, match="a path or a dict"):
        load_tokenizer_json([1, 2])
    deep = {"type": "Sequence", "normalizers": []}
    for _ in range(5000):
        deep = {"type": "Sequence", "normalizers": [deep]}
    spec = fixture_spec("llama2")
    spec["normalizer"] = deep
    with pytest.raises(ValueError, match="nested too deeply"):
        load_tokenizer_json(spec)


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 2 ** 40) |
                     st.floats(allow_nan=False) | st.text(max_size=6),
                     lambda inner: st.lists(inner, max_size=3) |
                     st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in ("vocab", "merges") or len(prefix) != 1:
                yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:4]):
            yield from _paths(v, prefix + (i,))


_MUTABLE = {name: list(_paths(fixture_spec(name)))[1:] for name in ("llama2", "llama3")}


@pytest.mark.parametrize("name", ["llama2", "llama3"])
@settings(max_examples=150)
@given(data=st.data())
def test_mutated_files_load_or_raise_value_error(name, data):
    spec = fixture_spec(name)
    path = data.draw(st.sampled_from(_MUTABLE[name]))
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(_JSON)
    try:
        tok = load_tokenizer_json(spec)
    except ValueError:
        return
    ids = tok.encode("Hello <s> wörld 日本 👍")                    # a file that loads works
    assert isinstance(tok.decode(ids), str)


def test_pathological_merges_and_huge_input_finish_quickly():
    # 2,000 merges building "a" * 2 ** k and "b"-chains: a word of 200,000 characters
    vocab = {"a": 0, "b": 1}
    merges = []
    for k in range(1, 1000):
        left, right = "a" * k, "a"
        vocab[left + right] = len(vocab)
        merges.append([left, right])
        left, right = "b", "b" * k
        vocab[left + right] = len(vocab)
        merges.append([left, right])
    spec = {"model": {"type": "BPE", "vocab": vocab, "merges": merges}}
    tok = HFTokenizer(spec)
    start = time.perf_counter()
    ids = tok.encode(("a" * 997 + "b" * 1003) * 100)
    assert time.perf_counter() - start < 20
    assert tok.decode(ids).replace(" ", "") == ("a" * 997 + "b" * 1003) * 100


def test_many_added_tokens_with_shared_prefixes_finish_quickly():
    spec = fixture_spec("llama3")
    first = max(t["id"] for t in spec["added_tokens"]) + 1
    spec["added_tokens"] += [{"id": first + k, "content": "a" * (k + 1) + "\u2603",
                              "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False, "special": False} for k in range(300)]
    tok = load_tokenizer_json(spec)
    start = time.perf_counter()
    tok.encode("a" * 3000 + "\u2603")
    assert time.perf_counter() - start < 20
    assert tok.encode("aa\u2603", add_special_tokens=False) == [first + 1]


def test_decode_leaves_out_ids_without_a_token_and_refuses_negative_ones():
    tok = ours("llama2")
    hello = tok.encode("hello", add_special_tokens=False)
    assert tok.decode(hello + [10 ** 6] + hello) == tok.decode(hello + hello)
    assert tok.token_bytes(10 ** 6) == b"" and tok.id_to_token(10 ** 6) is None
    with pytest.raises(ValueError, match="out of range.*: -1"):
        tok.decode([0, -1])
    with pytest.raises(ValueError, match="lone surrogate"):
        ours("llama2").encode("a\ud800")


def test_example_tokenizer_from_the_docstrings():
    tok = HFTokenizer(_example())
    assert tok.encode(" the") == [259, 258]


# ----------------------------------------------------------------------------------------
# 4. Switches the fixtures leave alone, each against recorded ids and the library live
# ----------------------------------------------------------------------------------------

def _tiny(ignore_merges=False, pre_tokenizer=None, post_processor=None):
    """A hand-written SentencePiece-style file: "▁abc" is in the vocabulary but no merge
    builds it ("▁ a" comes first, then nothing joins "▁a" and "b"), so ``ignore_merges``
    decides between [▁abc] and [▁a, b, c]."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, "a": 4, "b": 5, "c": 6, "ab": 7,
             "abc": 8, "▁abc": 9, "▁a": 10}
    return {"added_tokens": [
                {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True} for t, i in list(vocab.items())[:3]],
            "pre_tokenizer": pre_tokenizer or {"type": "Metaspace", "replacement": "▁",
                                               "prepend_scheme": "always", "split": True},
            "post_processor": post_processor,
            "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                        "split": True},
            "model": {"type": "BPE", "vocab": vocab, "merges": ["▁ a", "a b"],
                      "unk_token": "<unk>", "ignore_merges": ignore_merges}}


def _check_live(spec, texts):
    tokenizers = pytest.importorskip("tokenizers")
    lib = tokenizers.Tokenizer.from_str(json.dumps(spec))
    tok = HFTokenizer(spec)
    for text in texts:
        assert tok.encode(text) == lib.encode(text).ids, text
        assert tok.decode(tok.encode(text)) == lib.decode(lib.encode(text).ids), text


def test_ignore_merges_takes_a_whole_word_from_the_vocabulary():
    assert HFTokenizer(_tiny(ignore_merges=False)).encode("abc") == [10, 5, 6]
    assert HFTokenizer(_tiny(ignore_merges=True)).encode("abc") == [9]
    for flag in (False, True):
        _check_live(_tiny(ignore_merges=flag), ["abc", "abc abc", "ab c", " abcabc", "cab"])


@pytest.mark.parametrize("scheme", ["always", "first", "never"])
@pytest.mark.parametrize("split", [True, False])
def test_metaspace_prepend_schemes(scheme, split):
    pre = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}
    spec = _tiny(pre_tokenizer=pre)
    ids = HFTokenizer(spec).encode("abc<s>abc")
    assert ids[:1] == ([10] if scheme != "never" else [7])           # "▁a" or "ab"
    assert ids[-2:] == ([10, 5, 6][-2:] if scheme == "always" else [7, 6])
    _check_live(spec, ["abc", " abc", "abc abc", "abc<s>abc", "<s>abc", "a  b", ""])


def test_metaspace_legacy_add_prefix_space_field():
    pre = {"type": "Metaspace", "replacement": "▁", "add_prefix_space": True}
    _check_live(_tiny(pre_tokenizer=pre), ["abc abc", "<s>abc"])
    pre = {"type": "Metaspace", "replacement": "▁", "add_prefix_space": False,
           "prepend_scheme": "always"}
    with pytest.raises(ValueError, match="add_prefix_space false"):
        HFTokenizer(_tiny(pre_tokenizer=pre))


@pytest.mark.parametrize("kind", ["RobertaProcessing", "BertProcessing"])
def test_roberta_and_bert_processors_put_cls_and_sep_around(kind):
    post = {"type": kind, "sep": ["</s>", 2], "cls": ["<s>", 1]}
    if kind == "RobertaProcessing":
        post.update(trim_offsets=True, add_prefix_space=True)
    tok = HFTokenizer(_tiny(post_processor=post))
    assert tok.encode("ab") == [1, 10, 5, 2]
    assert tok.encode("ab", add_special_tokens=False) == [10, 5]
    _check_live(_tiny(post_processor=post), ["ab", "", "abc ab"])
    post["sep"] = ["</s>", 99]
    with pytest.raises(ValueError, match="known token id"):
        HFTokenizer(_tiny(post_processor=post))


def test_a_llama_folder_with_tokenizer_json_loads_and_generates(tmp_path):
    """npgpt.load reads the tokenizer.json beside a Llama checkpoint; generate's stop
    strings then decode the new tokens with it."""
    import shutil
    folder = tmp_path / "llama"
    shutil.copytree(os.path.join(FIXTURES, "llama", "llama_gqa"), folder)
    (folder / "tokenizer.json").write_text(json.dumps(_tiny()), encoding="utf-8")
    model = npgpt.load(str(folder))
    assert isinstance(model.tokenizer, HFTokenizer)
    prompt = np.array([model.tokenizer.encode("abc ab")])
    out = npgpt.generate(model, prompt, max_new_tokens=20, do_sample=True, seed=0,
                         stop_strings=["c"])
    new = out.sequences[0, prompt.shape[1]:].tolist()
    assert all(0 <= i < model.config.vocab_size for i in new)
    (folder / "tokenizer.json").write_text('{"model": {"type": "Unigram"', encoding="utf-8")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        npgpt.load(str(folder))


@pytest.mark.parametrize("behavior", ["Isolated", "Removed", "MergedWithPrevious",
                                      "MergedWithNext", "Contiguous"])
@pytest.mark.parametrize("invert", [False, True])
def test_split_on_a_string_and_digits(behavior, invert):
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "a"}, "behavior": behavior, "invert": invert},
        {"type": "Digits", "individual_digits": invert}]}
    spec = _tiny(pre_tokenizer=pre)
    spec["model"]["vocab"]["bc"] = 11
    spec["model"]["merges"] = ["a b", "b c"]
    _check_live(spec, ["abab aab ba", "aaa", "b12c345a", "", "a", "ab1ab22abc"])


@pytest.mark.parametrize("form", ["NFC", "NFD", "NFKC", "NFKD"])
def test_unicode_normalizers(form):
    spec = _tiny()
    spec["normalizer"] = {"type": form}
    spec["model"]["vocab"].update({"é": 11, "e": 12, "\u0301": 13, "fi": 14, "f": 15, "i": 16})
    _check_live(spec, ["é e\u0301 ﬁ fi", "Å\u212b", "abc"])
