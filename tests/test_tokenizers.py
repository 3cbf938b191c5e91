"""Tokenizers: the seed's word vocabulary, characters, and GPT-2's byte-level BPE.

GPT-2 parity runs at three levels:

1. always: ``tests/fixtures/tokenizer_gpt2_parity.json`` holds tiktoken's ids for a few texts
   (English, code, Korean, emoji, odd whitespace, a special token) and the small slice of
   GPT-2's ranks those texts can touch (BPE on a pre-token only looks up substrings of it);
2. with GPT-2's full rank file: the same texts with all 50257 tokens;
3. with the rank file and tiktoken: npgpt against tiktoken live, on fixed and generated text.

GPT-2's rank file is not in the repository. It ships in openai-whisper's source distribution:

    pip download --no-deps --no-binary :all: openai-whisper -d /tmp/whisper_sdist
    tar -xzf /tmp/whisper_sdist/openai_whisper-*.tar.gz -C /tmp --wildcards '*/gpt2.tiktoken'
    export NPGPT_GPT2_TIKTOKEN=$(ls /tmp/openai_whisper-*/whisper/assets/gpt2.tiktoken)
"""

import base64
import json
import os
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt.tokenizers import (GPT2_PATTERN, GPT2_SPECIAL_TOKENS, BPETokenizer, CharTokenizer,
                              WordTokenizer, bytes_to_unicode, gpt2_pattern, load_tokenizer,
                              tokenizer_from_dict)
from npgpt.tokenizers.byte_pair import byte_pair_merge, byte_pair_merge_heap

from helpers import FIXTURES, has_module

GPT2_RANKS = os.environ.get("NPGPT_GPT2_TIKTOKEN", "")
HAS_RANKS = bool(GPT2_RANKS) and os.path.exists(GPT2_RANKS)
needs_ranks = pytest.mark.skipif(
    not HAS_RANKS, reason="set NPGPT_GPT2_TIKTOKEN to GPT-2's gpt2.tiktoken (see module docstring)")
needs_tiktoken = pytest.mark.skipif(not (HAS_RANKS and has_module("tiktoken")),
                                    reason="needs tiktoken and NPGPT_GPT2_TIKTOKEN")

SEED_VOCAB = ["hello", "world", "this", "is", "a", "test", "model", "GPT", "language", "AI"]


def load_parity_fixture():
    with open(os.path.join(FIXTURES, "tokenizer_gpt2_parity.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def parity():
    return load_parity_fixture()


@pytest.fixture(scope="module")
def gpt2_slice(parity):
    ranks = {base64.b64decode(t): r for t, r in parity["ranks"]}
    return BPETokenizer.from_ranks(ranks, special_tokens=parity["special_tokens"])


@pytest.fixture(scope="module")
def gpt2_full():
    return BPETokenizer.from_tiktoken(GPT2_RANKS, special_tokens=GPT2_SPECIAL_TOKENS)


# ---------------------------------------------------------------------------------------
# WordTokenizer
# ---------------------------------------------------------------------------------------

def test_word_tokenizer_matches_the_seed_on_known_words():
    tok = WordTokenizer(SEED_VOCAB)
    ids = tok.encode("hello world this is")
    assert ids == [SEED_VOCAB.index(w) for w in "hello world this is".split()] == [0, 1, 2, 3]
    assert tok.decode(ids) == "hello world this is"
    assert tok.decode(np.array([7, 8], dtype=np.int64)) == "GPT language"
    assert tok.vocab_size == len(tok) == 10


def test_word_tokenizer_lists_every_unknown_word():
    tok = WordTokenizer(SEED_VOCAB)
    with pytest.raises(ValueError, match=r"2 unknown words: 'there', 'friend'") as e:
        tok.encode("hello there friend there")
    assert "hello" not in str(e.value)


def test_word_tokenizer_maps_unknown_words_to_unk():
    tok = WordTokenizer(SEED_VOCAB + ["<unk>"], unk_token="<unk>")
    assert tok.encode("hello there world") == [0, 10, 1]
    with pytest.raises(ValueError, match="unk_token '<oov>' is not in the vocabulary"):
        WordTokenizer(SEED_VOCAB, unk_token="<oov>")


@pytest.mark.parametrize("vocab, message", [
    (["a", "b", "a"], "duplicate vocabulary entry 'a' at positions 0 and 2"),
    (["a", "b c"], "contain no whitespace, got 'b c'"),
    (["a", ""], "non-empty"),
    ([], "vocabulary is empty"),
])
def test_word_tokenizer_rejects_bad_vocabularies(vocab, message):
    with pytest.raises(ValueError, match=message):
        WordTokenizer(vocab)


def test_word_tokenizer_decode_names_out_of_range_ids():
    tok = WordTokenizer(SEED_VOCAB)
    with pytest.raises(ValueError, match=r"vocabulary of size 10: -1, 10, 99"):
        tok.decode([0, 10, -1, 99, 10])
    with pytest.raises(ValueError, match=r"ids must be 1-D, got an array of shape \(1, 2\)"):
        tok.decode(np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="ids must be integers"):
        tok.decode([1.0])


def test_word_tokenizer_round_trips_through_dict_and_file(tmp_path):
    tok = WordTokenizer(SEED_VOCAB + ["<unk>"], unk_token="<unk>")
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again == tok and again.encode("AI model zzz") == tok.encode("AI model zzz") == [9, 6, 10]
    tok.save(tmp_path / "w.json")
    assert WordTokenizer.load(tmp_path / "w.json") == tok
    with pytest.raises(ValueError, match="holds a WordTokenizer, not a CharTokenizer"):
        CharTokenizer.load(tmp_path / "w.json")


# ---------------------------------------------------------------------------------------
# CharTokenizer
# ---------------------------------------------------------------------------------------

def test_char_tokenizer_from_text_uses_sorted_unique_characters():
    tok = CharTokenizer.from_text("to be or not to be\n")
    assert tok.chars == "\n benort"
    assert tok.vocab_size == 8
    assert tok.encode("bento") == [2, 3, 4, 7, 5]
    assert tok.decode([2, 3, 4, 7, 5]) == "bento"


def test_char_tokenizer_lists_every_unknown_character():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"2 unknown characters: 'x', '한'"):
        tok.encode("axb한x")


def test_char_tokenizer_rejects_bad_inputs():
    with pytest.raises(ValueError, match="duplicate character 'a' at positions 0 and 2"):
        CharTokenizer("aba")
    with pytest.raises(ValueError, match="single character, got 'ab'"):
        CharTokenizer(["ab", "c"])
    with pytest.raises(ValueError, match="text is empty"):
        CharTokenizer.from_text("")
    with pytest.raises(ValueError, match="vocabulary of size 3: 3"):
        CharTokenizer("abc").decode([0, 3])


def test_char_tokenizer_round_trips_through_dict_and_file(tmp_path):
    tok = CharTokenizer.from_text("Hello, 세계! 👍\t\x00")
    d = json.loads(json.dumps(tok.to_dict()))
    assert d["type"] == "char"
    assert tokenizer_from_dict(d) == tok
    tok.save(tmp_path / "c.json")
    assert load_tokenizer(tmp_path / "c.json") == tok


@pytest.mark.parametrize("make", [
    lambda: CharTokenizer.from_text("ab"),
    lambda: WordTokenizer(["ab"]),
    lambda: BPETokenizer([]),
])
def test_lone_surrogates_are_rejected_with_their_position(make):
    tok = make()
    with pytest.raises(ValueError, match=r"lone surrogate U\+D800 at position 2"):
        tok.encode("ab\ud800")


def test_tokenizer_from_dict_rejects_unknown_types():
    with pytest.raises(ValueError, match="unknown tokenizer type 'unigram'"):
        tokenizer_from_dict({"type": "unigram"})
    with pytest.raises(ValueError, match="needs a 'type' key"):
        tokenizer_from_dict({"chars": "abc"})


# ---------------------------------------------------------------------------------------
# Byte-level BPE: building blocks
# ---------------------------------------------------------------------------------------

def test_bytes_to_unicode_is_gpt2s_table():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord("~")] == "~" and table[0xFF] == "ÿ"
    assert table[0x20] == "Ġ" and table[0x0A] == "Ċ" and table[0x00] == "Ā"
    assert all(c.isprintable() and not c.isspace() for c in table.values())


@pytest.mark.parametrize("text, pieces", [
    ("Hello world's  123!", ["Hello", " world", "'s", " ", " 123", "!"]),
    ("I'll we've they'd", ["I", "'ll", " we", "'ve", " they", "'d"]),
    ("a  \n\n b", ["a", "  \n\n", " b"]),
    ("x   ", ["x", "   "]),
    ("안녕, 세계", ["안녕", ",", " 세계"]),
    ("ab12½Ⅻ", ["ab", "12½Ⅻ"]),                        # \p{N} includes No and Nl
    ("a\x1cb", ["a", "\x1c", "b"]),                    # U+001C is not White_Space in GPT-2
    ("a  \x1c", ["a", " ", " \x1c"]),                  # ... so \s+(?!\S) stops before it
    ("a\u3000b\u00a0c", ["a", "\u3000", "b", "\u00a0", "c"]),  # ... but these are
    ("'S 'ss", ["'", "S", " '", "ss"]),                # contractions are case-sensitive
])
def test_gpt2_pattern_splits_like_gpt2(text, pieces):
    assert gpt2_pattern().findall(text) == pieces


def test_byte_pair_merge_takes_lowest_rank_first_and_leftmost_on_ties():
    ranks = {b"ab": 2, b"bc": 1, b"aa": 0}
    assert byte_pair_merge(b"abc", ranks) == [b"a", b"bc"]       # bc (1) before ab (2)
    # a token counts whichever pair makes it (tiktoken's rule): a + bc -> abc
    assert byte_pair_merge(b"abc", {**ranks, b"abc": 3}) == [b"abc"]
    assert byte_pair_merge(b"aaa", ranks) == [b"aa", b"a"]       # leftmost on ties
    assert byte_pair_merge(b"abcx", {b"ab": 0, b"abc": 1}) == [b"abc", b"x"]
    assert byte_pair_merge(b"abc", ranks, max_rank=2) == [b"a", b"bc"]
    assert byte_pair_merge(b"ab", ranks, max_rank=2) == [b"a", b"b"]
    long = b"ab" * 40 + b"c"
    assert byte_pair_merge_heap(long, ranks) == byte_pair_merge(long, ranks)


# ---------------------------------------------------------------------------------------
# BPETokenizer: training, special tokens, errors, serialisation
# ---------------------------------------------------------------------------------------

def test_train_learns_the_most_frequent_pairs_in_order():
    tok = BPETokenizer.train("aaab aaab", vocab_size=259)
    # counts: aa 4 -> merge; then (a,b) 2 ties (aa,a) 2: the smaller pair (97, 98) wins;
    # then (aa, ab) 2 ties...
    assert [tok.token_bytes(i) for i in range(256, 259)] == [b"aa", b"ab", b"aaab"]
    assert tok.encode("aaab") == [258]
    assert tok.encode(" aaab") == [32, 258]
    assert tok.vocab_size == 259


def test_train_stops_when_pairs_run_out_and_places_special_tokens_after_merges():
    tok = BPETokenizer.train("abab", vocab_size=1000, special_tokens=["<|endoftext|>"])
    assert [tok.token_bytes(i) for i in range(256, 258)] == [b"ab", b"abab"]
    assert tok.special_tokens == {"<|endoftext|>": 258}
    assert tok.vocab_size == 259
    with pytest.raises(ValueError, match="vocab_size must be at least 256 \\+ 1 special "
                                         "tokens = 257, got 256"):
        BPETokenizer.train("abab", vocab_size=256, special_tokens=["<|endoftext|>"])


def test_special_tokens_follow_tiktoken_rules():
    tok = BPETokenizer.train("hello world " * 5, vocab_size=270,
                             special_tokens=["<|endoftext|>", "<|pad|>"])
    eot, pad = tok.special_tokens["<|endoftext|>"], tok.special_tokens["<|pad|>"]
    text = "hello<|endoftext|> world<|pad|>"
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>' at position 5"):
        tok.encode(text)
    assert tok.encode(text, allowed_special="all") == (
        tok.encode("hello") + [eot] + tok.encode(" world") + [pad])
    with pytest.raises(ValueError, match=r"'<\|pad\|>' at position 24"):
        tok.encode(text, allowed_special={"<|endoftext|>"})
    mixed = tok.encode(text, allowed_special={"<|endoftext|>"}, disallowed_special="none")
    assert mixed == tok.encode("hello") + [eot] + tok.encode_ordinary(" world<|pad|>")
    assert tok.encode(text, disallowed_special="none") == tok.encode_ordinary(text)
    assert pad not in tok.encode_ordinary(text)
    assert tok.decode(tok.encode(text, allowed_special="all")) == text
    with pytest.raises(ValueError, match=r"not special tokens of this tokenizer: \['<\|x\|>'\]"):
        tok.encode("a", allowed_special={"<|x|>"})


def test_decode_names_bad_ids_and_replaces_invalid_utf8():
    tok = BPETokenizer([], special_tokens={"<|endoftext|>": 300})
    assert tok.vocab_size == 301
    with pytest.raises(ValueError, match="vocabulary of size 301: 256, 299, 301"):
        tok.decode([104, 256, 299, 301, 300])
    euro = list("€".encode("utf-8"))                       # 3 bytes
    assert tok.decode(euro[:2]) == "\ufffd"                # GPT-2 / tiktoken: errors="replace"
    assert tok.decode(euro[:2] + [104]) == "\ufffdh"
    assert tok.decode_bytes(euro[:2]) == "€".encode("utf-8")[:2]
    with pytest.raises(UnicodeDecodeError):
        tok.decode(euro[:2], errors="strict")
    assert tok.decode(euro + [300]) == "€<|endoftext|>"


@pytest.mark.parametrize("make, message", [
    (lambda: BPETokenizer([(97, 98), (97, 98)]),
     "merge 1 \\(97, 98\\) makes b'ab', already token 256"),
    (lambda: BPETokenizer([(97, 300)]), "merge 0 \\(97, 300\\) uses an id not defined"),
    (lambda: BPETokenizer([], special_tokens={"<|x|>": 97}), "already the id of b'a'"),
    (lambda: BPETokenizer([], pattern="(a)|b"), "capturing groups"),
    (lambda: BPETokenizer.from_ranks({b"a": 0}), "lack 255 single bytes"),
])
def test_bpe_rejects_inconsistent_definitions(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bpe_round_trips_through_dict_file_and_gpt2_files(tmp_path):
    text = "The tokenizer 토크나이저 learns merges 👍👍 from text.\n" * 10
    tok = BPETokenizer.train(text, vocab_size=300, special_tokens=["<|endoftext|>"])
    d = json.loads(json.dumps(tok.to_dict()))
    assert d["type"] == "bpe" and d["pattern"] == "gpt2" and "byte_ids" not in d
    assert len(d["merges"]) == 300 - 256 - 1
    for again in (tokenizer_from_dict(d), BPETokenizer.from_dict(d)):
        assert again == tok
        assert again.encode(text) == tok.encode(text)
    tok.save(tmp_path / "bpe.json")
    assert BPETokenizer.load(tmp_path / "bpe.json") == tok
    tok.save_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    again = BPETokenizer.from_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert again.special_tokens == {"<|endoftext|>": 299}
    assert again.to_dict() == tok.to_dict()


def test_from_gpt2_keeps_the_vocab_files_ids(tmp_path):
    # a GPT-2-style pair of files whose ids are not in merge order
    table = bytes_to_unicode()
    vocab = {table[b]: 1000 - b for b in range(256)}
    vocab.update({"ab": 5, "abc": 3, "<|special|>": 7})
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\nab c\n", encoding="utf-8")
    tok = BPETokenizer.from_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert tok.encode("abcab") == [3, 5]
    assert tok.encode("abd") == [5, 1000 - ord("d")]
    assert tok.special_tokens == {"<|special|>": 7}
    assert tok.vocab_size == 1001
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again == tok and again.encode("abcab") == [3, 5]
    again.save_gpt2(tmp_path / "v2.json", tmp_path / "m2.txt")
    assert json.loads((tmp_path / "v2.json").read_text(encoding="utf-8")) == vocab


def test_from_tiktoken_reads_base64_rank_lines(tmp_path):
    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    lines += [f"{base64.b64encode(b'ab').decode()} 256", f"{base64.b64encode(b'abc').decode()} 257"]
    (tmp_path / "r.tiktoken").write_text("\n".join(lines) + "\n")
    tok = BPETokenizer.from_tiktoken(tmp_path / "r.tiktoken", special_tokens={"<|e|>": 258})
    assert tok.encode("abcab<|e|>", allowed_special="all") == [257, 256, 258]
    assert tok.to_dict()["merges"] == [[97, 98], [256, 99]]
    (tmp_path / "bad.tiktoken").write_text("YQ== 0\nnot-base64\n")
    with pytest.raises(ValueError, match="line 2: expected '<base64> <rank>'"):
        BPETokenizer.from_tiktoken(tmp_path / "bad.tiktoken")


def test_ranks_that_are_not_merges_are_stored_as_tokens():
    ranks = {bytes([b]): b for b in range(256)}
    ranks[b"abc"] = 256            # no two-part split: only reachable as a whole pre-token
    tok = BPETokenizer.from_ranks(ranks)
    assert tok.encode("abc abcd") == [256, 32, 97, 98, 99, 100]
    d = json.loads(json.dumps(tok.to_dict()))
    assert "merges" not in d and len(d["tokens"]) == 257
    assert tokenizer_from_dict(d).encode("abc abcd") == tok.encode("abc abcd")


def test_public_api_exports_the_tokenizers():
    from npgpt import tokenizers
    assert tokenizers.WordTokenizer is WordTokenizer
    for name in ("WordTokenizer", "CharTokenizer", "BPETokenizer"):
        if hasattr(npgpt, name):
            assert getattr(npgpt, name) is getattr(tokenizers, name)


# ---------------------------------------------------------------------------------------
# GPT-2 parity
# ---------------------------------------------------------------------------------------

def test_parity_fixture_is_a_small_slice_of_gpt2(parity):
    assert 256 < len(parity["ranks"]) < 0.05 * parity["full_vocab_size"]
    names = {c["name"] for c in parity["cases"]}
    assert {"english", "code", "korean", "emoji", "whitespace", "special"} <= names


def test_gpt2_slice_encodes_like_tiktoken(parity, gpt2_slice):
    for case in parity["cases"]:
        ids = gpt2_slice.encode(case["text"], allowed_special=case["allowed_special"])
        assert ids == case["ids"], case["name"]
        assert gpt2_slice.decode(ids) == case["text"]
    assert gpt2_slice.encode("The quick brown fox") == [464, 2068, 7586, 21831]


@needs_ranks
def test_gpt2_ranks_encode_like_tiktoken_fixture(parity, gpt2_full):
    assert gpt2_full.vocab_size == 50257
    for case in parity["cases"]:
        ids = gpt2_full.encode(case["text"], allowed_special=case["allowed_special"])
        assert ids == case["ids"], case["name"]


@needs_ranks
def test_gpt2_merges_survive_the_dict_round_trip(gpt2_full, tmp_path):
    d = gpt2_full.to_dict()
    assert len(d["merges"]) == 50000 and d["special_tokens"] == {"<|endoftext|>": 50256}
    again = tokenizer_from_dict(json.loads(json.dumps(d)))
    text = "Round trip: 안녕하세요 👍🏽 x**2\n\n"
    assert again.encode(text) == gpt2_full.encode(text)
    gpt2_full.save_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    first = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()[:3]
    assert first == ["#version: 0.2", "Ġ t", "Ġ a"]          # GPT-2's vocab.bpe starts so
    from_files = BPETokenizer.from_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert from_files.encode(text) == gpt2_full.encode(text)


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    return tiktoken.Encoding("gpt2_local", pat_str=GPT2_PATTERN,
                             mergeable_ranks=load_tiktoken_bpe(GPT2_RANKS),
                             special_tokens=GPT2_SPECIAL_TOKENS)


LIVE_TEXTS = [
    "Hello world", "It's 12:30 -- we'll see.", "def f(x):\n\treturn x ** 2  # sq\n\n\n",
    "안녕하세요 세계", "👍🏽👨\u200d👩\u200d👧🇰🇷", "\x00\x01\x1c\x1f\x7f\x85\xa0\u2028\u3000 \r\n\t",
    "x" * 500, " " * 300 + "a", "a" + "\n" * 100, "ǅungla ΑΒΓ 𝐀𝐁 ٣٤٥ ⅫⅩ",
]


@needs_tiktoken
@pytest.mark.parametrize("text", LIVE_TEXTS)
def test_gpt2_encode_equals_tiktoken_live(text, gpt2_full, tiktoken_gpt2):
    assert gpt2_full.encode(text) == tiktoken_gpt2.encode(text)
    assert gpt2_full.decode(tiktoken_gpt2.encode(text)) == tiktoken_gpt2.decode(
        tiktoken_gpt2.encode(text))


def _assigned(c):
    # Characters unassigned in this Python's Unicode database may be letters in the newer
    # Unicode that tiktoken's Rust regex knows; \p{L} here cannot know about them.
    return unicodedata.category(c) != "Cn"


@needs_tiktoken
@settings(max_examples=300)
@given(st.lists(st.one_of(
    st.text(st.characters(blacklist_categories=("Cs", "Cn")), max_size=6),
    st.sampled_from(["'s", "'ll", " ", "  ", "\n\n", "\t", "\x1c", "\u3000", "한국어", "👍🏽",
                     "1234", "<|endoftext|>", "..."])), max_size=12).map("".join))
def test_gpt2_encode_equals_tiktoken_on_generated_text(gpt2_full, tiktoken_gpt2, text):
    assert all(_assigned(c) for c in text)
    expected = tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2_full.encode(text, allowed_special="all") == expected
