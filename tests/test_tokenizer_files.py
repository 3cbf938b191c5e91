"""Tokenizers read from files are checked as strictly as weights.

Every malformed tokenizer -- a dict (``tokenizer_from_dict``), a JSON file (``load_tokenizer``),
GPT-2's vocab.json/merges.txt (``BPETokenizer.from_gpt2``), a tiktoken rank file
(``BPETokenizer.from_tiktoken``) -- is a ValueError naming the problem, never a TypeError,
KeyError, OverflowError or UnicodeDecodeError; inside a model file or folder it is a
CheckpointError naming the file. A pattern from a file must be registered by name.
"""

import base64
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt.io import CheckpointError, write_safetensors
from npgpt.tokenizers import (PATTERNS, BPETokenizer, CharTokenizer, WordTokenizer,
                              bytes_to_unicode, load_tokenizer, tokenizer_from_dict)
from npgpt.tokenizers.patterns import GPT2_PATTERN
from helpers import FIXTURES, tiny_config

SHORT = 1000
BPE = BPETokenizer.train("hello world, hello there; the theme then\n" * 5, vocab_size=280,
                         special_tokens=["<|endoftext|>"])
RANKS = BPETokenizer.from_ranks({**{bytes([b]): b for b in range(256)}, b"abc": 256})
VALID = {"bpe": BPE.to_dict(), "ranks": RANKS.to_dict(),
         "char": CharTokenizer.from_text("hello").to_dict(),
         "word": WordTokenizer(["<unk>", "a", "b"], unk_token="<unk>").to_dict()}


def rejected(call, *args, match=None):
    """The ValueError ``call`` raises (no other exception may escape), checked to be short."""
    with pytest.raises(ValueError) as info:
        call(*args)
    message = str(info.value)
    assert type(info.value) in (ValueError, CheckpointError), type(info.value)
    assert 0 < len(message) < SHORT, message[:2000]
    if match is not None:
        assert __import__("re").search(match, message), message
    return message


def edited(kind, **changes):
    return {**json.loads(json.dumps(VALID[kind])), **changes}


# ------------------------------------------------------------- ids, merges, special tokens
@pytest.mark.parametrize("d, message", [
    (edited("bpe", merges=[[97.0, 98.0]]), r"merge 0: an id must be an integer id .* got 97\.0"),
    (edited("bpe", merges=[[True, 98]]), "got True"),
    (edited("bpe", merges=[[-1, 98]]), "got -1"),
    (edited("bpe", merges=[[97, 10 ** 400]]), "got <int of 1329 bits>"),
    (edited("bpe", merges=[["97", 98]]), "got '97'"),
    (edited("bpe", merges=[[97]]), "merge 0 must be a pair of ids"),
    (edited("bpe", merges=[97]), "merge 0 must be a pair of ids"),
    (edited("bpe", merges=[[97, 300]]), "uses an id not defined before it"),
    (edited("bpe", merges=[[97, 98], [97, 98]]), "already token 256"),
    (edited("bpe", merges=[[97, 98], [98, 99]], merge_ids=[256, 256]), "reuses id 256"),
    (edited("bpe", merges=[[97, 98]], merge_ids=[98]), "reuses id 98"),
    (edited("bpe", merges=[[97, 98]], merge_ids=[2 ** 40]), "merge id must be an integer id"),
    (edited("bpe", byte_ids=list(range(255)) + [0]), "id 0 is used for bytes"),
    (edited("bpe", byte_ids=[float(i) for i in range(256)]), "a byte id must be an integer"),
    (edited("bpe", special_tokens={"<|e|>": 97}), "already the id of b'a'"),
    (edited("bpe", special_tokens={"<|a|>": 400, "<|b|>": 400}), "share the id 400"),
    (edited("bpe", special_tokens={"<|e|>": 400.0}), "must be an integer id"),
    (edited("bpe", special_tokens={"<|e|>": False}), "got False"),
    (edited("bpe", special_tokens={"": 400}), "special tokens must be non-empty"),
    (edited("bpe", special_tokens=[["<|e|>", 400]]), "'special_tokens' must be dict or null"),
    (edited("bpe", merges=None), "'merges' must be list"),
    ({"type": "bpe"}, "needs a 'merges' key"),
    (edited("ranks", tokens=[["YQ==", 0]] * 2), r"tokens\[1\]: token b'a' appears twice"),
    (edited("ranks", tokens=[["not base64!", 0]]), "is not base64"),
    (edited("ranks", tokens=[["YQ==", "0"]]), "the id must be an integer id"),
    (edited("ranks", tokens=[["YQ=="]]), r"tokens\[0\] must be \[base64 bytes, id\]"),
    (edited("ranks", tokens={"YQ==": 0}), "'tokens' must be list"),
    (edited("char", chars=42), "'chars' must be str or list"),
    (edited("char", chars=["ab"]), "a single character"),
    (edited("char", chars="aa"), "duplicate character"),
    ({"type": "char"}, "needs a 'chars' key"),
    (edited("word", vocabulary="a b"), "'vocabulary' must be list"),
    (edited("word", vocabulary=[1, 2]), "vocabulary entries must be str, got 1"),
    (edited("word", unk_token=["<unk>"]), "'unk_token' must be str or null"),
    (edited("word", unk_token="zzz"), "unk_token 'zzz' is not in the vocabulary"),
    ({"type": ["bpe"]}, r"unknown tokenizer type \['bpe'\]"),
    ({"type": "bpe", "merges": [], "pattern": None}, "pattern None is neither"),
    ([1, 2, 3], "needs a 'type' key"),
])
def test_malformed_tokenizer_dicts_are_value_errors_naming_the_problem(d, message):
    rejected(tokenizer_from_dict, d, match=message)


def test_merges_that_double_in_length_are_refused_before_allocating():
    merges = [[97, 97]] + [[256 + i, 256 + i] for i in range(60)]     # 2**61 bytes in the end
    start = time.perf_counter()
    rejected(tokenizer_from_dict, edited("bpe", merges=merges), match="more than 67108864 bytes")
    assert time.perf_counter() - start < 2


json_leaf = (st.none() | st.booleans() | st.integers(-3, 2 ** 33)
             | st.sampled_from([10 ** 400, 97, 256, 300]) | st.floats() | st.text(max_size=6))
json_values = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=4),
                           max_leaves=12)


def replace_somewhere(d, path, value):
    """``d`` with the node reached by following ``path`` (indices into keys/items) replaced."""
    node = d
    for step in path:
        children = list(node) if isinstance(node, dict) else range(len(node))
        if not children:
            break
        key = list(children)[step % len(children)]
        if not isinstance(node[key], (dict, list)) or step == path[-1]:
            node[key] = value
            return d
        node = node[key]
    return d


@settings(max_examples=60)
@given(kind=st.sampled_from(sorted(VALID)), path=st.lists(st.integers(0, 300), min_size=1,
                                                         max_size=3),
       value=json_values)
def test_any_edit_of_a_tokenizer_dict_builds_a_tokenizer_or_a_value_error(kind, path, value):
    d = replace_somewhere(json.loads(json.dumps(VALID[kind])), path, value)
    try:
        tok = tokenizer_from_dict(d)
    except ValueError as exc:
        assert type(exc) is ValueError and 0 < len(str(exc)) < SHORT
    else:
        assert isinstance(tok.vocab_size, int) and 0 < tok.vocab_size <= 2 ** 31


# -------------------------------------------------------------------- GPT-2 files
def gpt2_files(tmp_path, vocab=None, merges=None):
    """vocab.json / merges.txt of ``BPE`` with optional replacements (text or a JSON value)."""
    BPE.save_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    if vocab is not None:
        text = vocab if isinstance(vocab, (str, bytes)) else json.dumps(vocab)
        (tmp_path / "vocab.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    if merges is not None:
        (tmp_path / "merges.txt").write_bytes(merges if isinstance(merges, bytes)
                                              else merges.encode())
    return tmp_path / "vocab.json", tmp_path / "merges.txt"


def bpe_vocab():
    table = bytes_to_unicode()
    vocab = {"".join(table[b] for b in BPE.token_bytes(i)): i for i in range(BPE.vocab_size - 1)}
    return {**vocab, "<|endoftext|>": BPE.vocab_size - 1}


@pytest.mark.parametrize("vocab, merges, message", [
    ([1, 2], None, "must hold a JSON object token -> id"),
    ({**bpe_vocab(), "Ā": 1.0}, None, r"the id of 'Ā' must be an integer id .* got 1\.0"),
    ({**bpe_vocab(), "Ā": True}, None, "got True"),
    ({**bpe_vocab(), "Ā": -5}, None, "got -5"),
    ({**bpe_vocab(), "<|pad|>": 0}, None, "tokens 'Ā' and '<|pad|>' share the id 0"),
    ('{"a": 1, "a": 2}', None, "key 'a' appears twice"),
    (b'{"\xff": 1}', None, "not valid UTF-8 JSON"),
    ("[" * 100_000, None, "not valid UTF-8 JSON"),
    ({k: v for k, v in bpe_vocab().items() if k != "Ā"}, None, "lacks the single-byte token 'Ā'"),
    (None, "#version: 0.2\nh e\nh e\n", "merge 1 .* reuses id"),      # one id, defined twice
    (None, "#version: 0.2\nh\n", "line 2: expected 'a b'"),
    (None, "#version: 0.2\nh zz\n", "line 2: 'zz' is not in"),
    (None, b"#version: 0.2\nh e\n\xff\xfe\n", r"line 3: not UTF-8"),
])
def test_malformed_gpt2_files_are_value_errors_naming_the_file(tmp_path, vocab, merges, message):
    paths = gpt2_files(tmp_path, vocab, merges)
    text = rejected(BPETokenizer.from_gpt2, *paths, match=message)
    assert "vocab.json" in text or "merges.txt" in text


def test_a_merge_using_a_token_no_earlier_merge_made_is_refused(tmp_path):
    vocab_path, merges_path = gpt2_files(tmp_path)
    lines = merges_path.read_text(encoding="utf-8").splitlines()
    late = next(i for i, line in enumerate(lines) if i and len(line.split(" ")[0]) > 1)
    lines.insert(1, lines.pop(late))                     # a merge of merges, moved first
    merges_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rejected(BPETokenizer.from_gpt2, vocab_path, merges_path, match="not defined before it")


@settings(max_examples=40)
@given(line=st.integers(0, 40), edit=st.text(max_size=8), vocab_edit=json_values,
       key=st.sampled_from(["h", "he", "Ġthe", "<|endoftext|>", "new"]))
def test_edited_gpt2_files_build_a_tokenizer_or_a_value_error(tmp_path_factory, line, edit,
                                                              vocab_edit, key):
    folder = tmp_path_factory.mktemp("gpt2")
    vocab_path, merges_path = gpt2_files(folder)
    lines = merges_path.read_text(encoding="utf-8").split("\n")
    lines[line % len(lines)] = edit
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    vocab[key] = vocab_edit
    gpt2_files(folder, vocab, "\n".join(lines))
    try:
        BPETokenizer.from_gpt2(vocab_path, merges_path)
    except ValueError as exc:
        assert type(exc) is ValueError and 0 < len(str(exc)) < SHORT


# -------------------------------------------------------------------- tiktoken files
def rank_lines(extra=()):
    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    return "\n".join(lines + list(extra)) + "\n"


@pytest.mark.parametrize("extra, message", [
    (["YWI= -256"], "line 257: expected '<base64> <rank>'"),
    (["YWI= +256"], "line 257: expected"),
    (["YWI= 1_000"], "line 257: expected"),
    (["YWI= 256.0"], "line 257: expected"),
    (["YWI= " + "9" * 5000], "line 257: expected"),
    (["YWI= 99999999999"], "line 257: expected"),
    (["YWI= 4294967295"], "must be an integer id in"),
    (["YWI= 256", "YWI= 257"], "line 258: token b'ab' was already given a rank on line 257"),
    (["YWI= 97"], r"rank 97 is given to both b'(a|ab)' and b'(ab|a)'"),
    (["!!! 256"], "line 257: expected"),
])
def test_malformed_tiktoken_files_are_value_errors_naming_the_line(tmp_path, extra, message):
    (tmp_path / "r.tiktoken").write_text(rank_lines(extra))
    text = rejected(BPETokenizer.from_tiktoken, tmp_path / "r.tiktoken", match=message)
    assert "r.tiktoken" in text


@settings(max_examples=40)
@given(data=st.binary(max_size=60), at=st.integers(0, 4000))
def test_any_bytes_in_a_tiktoken_file_build_a_tokenizer_or_a_value_error(tmp_path_factory, data,
                                                                         at):
    blob = rank_lines(["YWI= 256"]).encode()
    at %= len(blob) + 1
    path = tmp_path_factory.mktemp("tt") / "r.tiktoken"
    path.write_bytes(blob[:at] + data + blob[at:])
    try:
        BPETokenizer.from_tiktoken(path)
    except ValueError as exc:
        assert type(exc) is ValueError and 0 < len(str(exc)) < SHORT


# ------------------------------------------------------------------------- JSON files
@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe{}", "not valid UTF-8 JSON"),
    (b"[" * 100_000, "not valid UTF-8 JSON"),
    (b'{"type": "char", "chars": "ab", "chars": "cd"}', "key 'chars' appears twice"),
    (b'{"type": "char", "chars": 3}', "'chars' must be str or list"),
    (b"1" * 5000, "not valid UTF-8 JSON"),
])
def test_malformed_tokenizer_files_are_value_errors_naming_the_file(tmp_path, content, message):
    (tmp_path / "tok.json").write_bytes(content)
    assert "tok.json" in rejected(load_tokenizer, tmp_path / "tok.json", match=message)


def runs_briefly(call, *args, timeout=10):
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(_outcome(call, *args)), daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else "blocked"


def _outcome(call, *args):
    try:
        call(*args)
    except Exception as exc:            # the test checks which
        return exc
    return None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("loader", ["load_tokenizer", "from_gpt2 vocab", "from_gpt2 merges",
                                    "from_tiktoken"])
def test_tokenizer_loaders_never_block_on_a_fifo(tmp_path, loader):
    vocab, merges = gpt2_files(tmp_path)
    fifo = {"load_tokenizer": tmp_path / "tok.json", "from_gpt2 vocab": vocab,
            "from_gpt2 merges": merges, "from_tiktoken": tmp_path / "r.tiktoken"}[loader]
    if fifo.exists():
        os.remove(fifo)
    os.mkfifo(fifo)
    call = {"load_tokenizer": lambda: load_tokenizer(fifo),
            "from_gpt2 vocab": lambda: BPETokenizer.from_gpt2(vocab, merges),
            "from_gpt2 merges": lambda: BPETokenizer.from_gpt2(vocab, merges),
            "from_tiktoken": lambda: BPETokenizer.from_tiktoken(fifo)}[loader]
    try:
        exc = runs_briefly(call)
    finally:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert exc != "blocked", f"{loader} blocked on a FIFO"
    assert isinstance(exc, ValueError) and "FIFO" in str(exc) and fifo.name in str(exc)


def test_tokenizer_loaders_refuse_devices():
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    for call in (lambda: load_tokenizer("/dev/zero"),
                 lambda: BPETokenizer.from_tiktoken("/dev/zero")):
        assert "character device" in rejected(call)


# --------------------------------------------------------------------------- patterns
CATASTROPHIC = "(?:a|a)*b|."


def test_a_pattern_from_a_file_must_be_registered(tmp_path):
    d = edited("bpe", pattern=CATASTROPHIC)
    message = rejected(tokenizer_from_dict, d, match="register_pattern")
    assert "(?:a|a)*b|." in message and "'gpt2'" in message
    (tmp_path / "tok.json").write_text(json.dumps(d))
    rejected(load_tokenizer, tmp_path / "tok.json", match="tok.json: pre-tokenisation pattern")
    rejected(tokenizer_from_dict, edited("bpe", pattern="no-such-name"), match="register_pattern")


def test_gpt2_by_name_or_by_its_regex_loads_from_a_file():
    assert tokenizer_from_dict(edited("bpe", pattern="gpt2")) == BPE
    tok = tokenizer_from_dict(edited("bpe", pattern=GPT2_PATTERN))
    assert tok.encode_ordinary("hello there") == BPE.encode_ordinary("hello there")
    assert tokenizer_from_dict({k: v for k, v in VALID["bpe"].items() if k != "pattern"}) == BPE


def test_a_raw_regex_in_code_saves_and_loads_once_registered(tmp_path, monkeypatch):
    monkeypatch.setattr("npgpt.tokenizers.patterns.PATTERNS", dict(PATTERNS))
    from npgpt.tokenizers import patterns
    words = r"\w+|\s+|[^\w\s]+"
    tok = BPETokenizer.train("a b, a b; a b", vocab_size=258, pattern=words)
    assert tok.pretokenize("a b,") == ["a", " ", "b", ","]
    assert tok.to_dict()["pattern"] == words                  # stored as given
    tok.save(tmp_path / "tok.json")
    rejected(load_tokenizer, tmp_path / "tok.json", match="register_pattern")
    patterns.register_pattern("words", words)
    assert load_tokenizer(tmp_path / "tok.json") == tok       # the regex, now registered
    by_name = BPETokenizer.train("a b, a b; a b", vocab_size=258, pattern="words")
    assert by_name.to_dict()["pattern"] == "words"
    assert tokenizer_from_dict(by_name.to_dict()).pretokenize("a b,") == tok.pretokenize("a b,")


def test_register_pattern_checks_its_arguments(monkeypatch):
    monkeypatch.setattr("npgpt.tokenizers.patterns.PATTERNS", dict(PATTERNS))
    from npgpt.tokenizers import patterns
    with pytest.raises(ValueError, match="a pattern name is"):
        patterns.register_pattern("has space", r"\w+")
    with pytest.raises(ValueError, match="already registered"):
        patterns.register_pattern("gpt2", r"\w+")
    with pytest.raises(ValueError, match="capturing groups"):
        patterns.register_pattern("grouped", r"(\w)+")
    with pytest.raises(ValueError, match="not a valid Python regular expression"):
        patterns.register_pattern("broken", "(")
    patterns.register_pattern("gpt2", GPT2_PATTERN)           # the same again: fine
    patterns.register_pattern("w", r"\w+")
    patterns.register_pattern("w", r"\w+")
    assert "broken" not in patterns.PATTERNS and patterns.PATTERNS["w"] == r"\w+"


def test_a_regex_spelled_like_a_compiled_cache_key_is_compiled_as_itself():
    tok = BPETokenizer([], pattern="gpt2_bmp")                 # a literal regex, in code
    assert tok.pretokenize("xgpt2_bmpy") == ["gpt2_bmp"]
    assert npgpt.tokenizers.gpt2_split("a b") == ["a", " b"]


# ------------------------------------------------------- inside model files and folders
def model_file(tmp_path, tokenizer_dict, vocab_size=17):
    model = npgpt.GPT(tiny_config(vocab_size=vocab_size), seed=0)
    meta = {"format": "npgpt", "config": model.config.to_json(),
            "tokenizer": json.dumps(tokenizer_dict)}
    write_safetensors(tmp_path / "m.safetensors", model.state_dict(), meta)
    return tmp_path / "m.safetensors"


@pytest.mark.parametrize("d, message", [
    (edited("bpe", merges=[[97.5, 98]]), "must be an integer id"),
    (edited("bpe", pattern=CATASTROPHIC), "register_pattern"),
    (edited("char", chars=42), "'chars' must be str or list"),
])
def test_a_bad_tokenizer_in_a_model_file_is_a_checkpoint_error_naming_the_file(tmp_path, d,
                                                                               message):
    path = model_file(tmp_path, d, vocab_size=300)
    with pytest.raises(CheckpointError, match=message) as info:
        npgpt.load(path)
    assert str(path) in str(info.value)


def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused(tmp_path):
    path = model_file(tmp_path, VALID["bpe"], vocab_size=17)
    with pytest.raises(CheckpointError, match=f"ids up to {BPE.vocab_size - 1} but the model's "
                                              f"vocab_size is 17"):
        npgpt.load(path)
    fitting = model_file(tmp_path, VALID["bpe"], vocab_size=BPE.vocab_size)
    assert npgpt.load(fitting).tokenizer == BPE
    assert npgpt.load(model_file(tmp_path, VALID["char"], vocab_size=17)).tokenizer.vocab_size == 4


def test_a_gpt2_folder_whose_vocabulary_exceeds_the_model_is_refused(tmp_path):
    folder = tmp_path / "hf"
    shutil.copytree(os.path.join(FIXTURES, "tiny_gpt2_safetensors"), folder)
    BPE.save_gpt2(folder / "vocab.json", folder / "merges.txt")
    vocab_size = json.loads((folder / "config.json").read_text())["vocab_size"]
    assert vocab_size < BPE.vocab_size
    with pytest.raises(CheckpointError, match=f"vocab.json: the tokenizer has ids up to "
                                              f"{BPE.vocab_size - 1} but the model's "
                                              f"vocab_size is {vocab_size}"):
        npgpt.load(folder)
    (folder / "vocab.json").write_text(json.dumps({**bpe_vocab(), "x": 1.5}))
    with pytest.raises(CheckpointError, match="vocab.json/merges.txt are invalid: ValueError"):
        npgpt.load(folder)


def test_a_saved_model_with_a_gpt2_tokenizer_still_loads(tmp_path):
    model = npgpt.GPT(tiny_config(vocab_size=BPE.vocab_size), seed=0)
    model.tokenizer = BPE
    model.save(tmp_path / "m.safetensors")
    back = npgpt.load(tmp_path / "m.safetensors")
    assert back.tokenizer == BPE
    ids = back.tokenizer.encode("hello theme")
    assert back(np.array(ids)).shape == (len(ids), BPE.vocab_size)


@given(st.lists(st.text(min_size=1, max_size=3000).filter(lambda w: w.split() == [w] and w != "known"),
                min_size=1, max_size=200))
def test_an_unknown_word_error_repeats_a_bounded_amount_of_the_text(words):
    tok = WordTokenizer(["known"])
    with pytest.raises(ValueError) as caught:
        tok.encode(" ".join(words))
    assert len(str(caught.value)) < 50 * 80 + 100
    assert str(caught.value).startswith(f"{len(set(words))} unknown word")
