"""Invariants of the tokenizers, on text drawn from all of Unicode (hypothesis).

Text strategies cover every code point except lone surrogates (which have no UTF-8 form and
are rejected): control characters, CJK, Korean, emoji, odd whitespace, combining marks.
"""

import base64
import json
import os

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from npgpt.tokenizers import (BPETokenizer, CharTokenizer, WordTokenizer, gpt2_pattern,
                              gpt2_split, tokenizer_from_dict)
from npgpt.tokenizers.byte_pair import byte_pair_merge, byte_pair_merge_heap

from helpers import FIXTURES

any_char = st.characters(blacklist_categories=("Cs",))            # all of Unicode but surrogates
special_chars = st.sampled_from(
    ["\x00", "\x1b", "\x1c", "\x7f", "\x85", "\t", "\n", "\r", "\x0b", " ", "\u00a0", "\u2028",
     "\u3000", "\u200d", "\u0301", "'", "한", "국", "어", "漢", "字", "👍", "🏽", "🇰", "🇷", "½",
     "٣", "a", "Z", "0"])
# Korean syllables, CJK ideographs, emoji, C0/C1 control characters
ranges = st.one_of(st.integers(0xAC00, 0xD7A3), st.integers(0x4E00, 0x9FFF),
                   st.integers(0x1F300, 0x1FAFF), st.integers(0, 0x1F), st.integers(0x7F, 0x9F))
chars = st.one_of(any_char, special_chars, ranges.map(chr))
texts = st.text(chars, max_size=40)
words = st.lists(st.sampled_from(["'s", "'ll", " ", "  ", "\n\n", "hello", " world", "123",
                                  " 안녕", "👍🏽", "...", "\t"]), max_size=8).map("".join)
mixed_texts = st.lists(st.one_of(texts, words), max_size=4).map("".join)

CORPUS = ("The quick brown fox jumps over the lazy dog. It's 12:30; we'll see.\n"
          "def f(x):\n    return x ** 2\n\n"
          "안녕하세요, 세계! 한국어 문장입니다. 漢字かなカナ 中文 👍🏽👍🏽 🇰🇷\n"
          "  odd\t\twhite \u00a0space\u3000 \x00\x1c\x7f ½ ٣ Ⅻ\n") * 3


@pytest.fixture(scope="module")
def trained():
    return BPETokenizer.train(CORPUS, vocab_size=320, special_tokens=["<|endoftext|>"])


@pytest.fixture(scope="module")
def gpt2_slice():
    with open(os.path.join(FIXTURES, "tokenizer_gpt2_parity.json"), encoding="utf-8") as f:
        fixture = json.load(f)
    ranks = {base64.b64decode(t): r for t, r in fixture["ranks"]}
    return BPETokenizer.from_ranks(ranks, special_tokens=fixture["special_tokens"])


@pytest.fixture(scope="module", params=["trained", "gpt2_slice"])
def bpe(request):
    return request.getfixturevalue(request.param)


@given(text=mixed_texts)
def test_bpe_decode_of_encode_is_identity(bpe, text):
    assert bpe.decode(bpe.encode(text, disallowed_special="none")) == text


@given(text=mixed_texts)
def test_bpe_ids_are_in_range_and_decodable(bpe, text):
    ids = bpe.encode(text, allowed_special="all")
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert b"".join(bpe.token_bytes(i) for i in ids) == bpe.decode_bytes(ids)


@given(text=mixed_texts, cut=st.integers(0, 10**6))
def test_bpe_encoding_a_concatenation_at_a_pretoken_boundary_concatenates_encodings(
        bpe, text, cut):
    pieces = bpe.pretokenize(text)
    k = cut % (len(pieces) + 1)
    a, b = "".join(pieces[:k]), "".join(pieces[k:])
    # the boundary is a pre-token boundary of a + b, a, and b alike
    assume(bpe.pretokenize(a) + bpe.pretokenize(b) == pieces)
    assert bpe.encode_ordinary(a + b) == bpe.encode_ordinary(a) + bpe.encode_ordinary(b)


# beyond U+FFFF: letters (bold A, CJK ext. B, Deseret), digits (bold 0, Old Italic one),
# symbols (emoji), unassigned; plus any code point
astral = st.one_of(st.sampled_from(["\U0001D400", "\U00020000", "\U00010400", "\U0001D7CE",
                                    "\U00010320", "\U0001F44D", "\U0001F3FD", "\U0003FFFF"]),
                   st.integers(0x10000, 0x10FFFF).map(chr))


@given(text=st.lists(st.one_of(mixed_texts, st.text(astral, max_size=4),
                               st.sampled_from(["'", "'s", " ", "1", "a"])),
                     max_size=8).map("".join))
def test_fast_gpt2_split_equals_the_full_pattern(text):
    assert gpt2_split(text) == gpt2_pattern().findall(text)
    assert "".join(gpt2_split(text)) == text


@given(text=mixed_texts)
def test_bpe_encoding_is_the_concatenation_of_its_pretokens_encodings(bpe, text):
    expected = [i for piece in bpe.pretokenize(text) for i in bpe.encode_ordinary(piece)]
    assert bpe.encode_ordinary(text) == expected


@given(text=mixed_texts)
def test_bpe_special_tokens_split_text_into_independently_encoded_parts(bpe, text):
    eot = "<|endoftext|>"
    ids = bpe.encode(text + eot + text, allowed_special="all")
    part = bpe.encode_ordinary(text)
    assert ids == part + [bpe.special_tokens[eot]] + part


@given(text=mixed_texts)
def test_bpe_dict_round_trip_encodes_identically(trained, text):
    again = tokenizer_from_dict(json.loads(json.dumps(trained.to_dict())))
    assert again.encode_ordinary(text) == trained.encode_ordinary(text)


@settings(max_examples=15)
@given(text=st.text(chars, max_size=300), extra=st.integers(0, 60))
def test_train_never_exceeds_vocab_size_and_is_deterministic(text, extra):
    size = 256 + extra
    first = BPETokenizer.train(text, vocab_size=size)
    second = BPETokenizer.train(text, vocab_size=size)
    assert first.vocab_size <= size
    assert first.to_dict() == second.to_dict()
    assert first.decode(first.encode(text)) == text


@given(text=texts, where=st.integers(0, 10**6), surrogate=st.integers(0xD800, 0xDFFF))
def test_lone_surrogates_are_rejected_naming_their_position(text, where, surrogate):
    k = where % (len(text) + 1)
    bad = text[:k] + chr(surrogate) + text[k:]
    for tok in (BPETokenizer([]), CharTokenizer.from_text(text + "a")):
        with pytest.raises(ValueError, match=f"lone surrogate U\\+{surrogate:04X} at position {k}"):
            tok.encode(bad)


@given(text=texts)
def test_char_decode_of_encode_is_identity(text):
    assume(text)
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert list(tok.chars) == sorted(set(text))


@given(text=mixed_texts)
def test_word_decode_of_encode_is_the_whitespace_normalised_text(text):
    vocabulary = list(dict.fromkeys(text.split())) or ["x"]
    tok = WordTokenizer(vocabulary)
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == " ".join(text.split())


small_bytes = st.lists(st.sampled_from(b"ab"), max_size=60).map(bytes)   # runs and ties


@settings(max_examples=100)
@given(data=st.one_of(small_bytes, st.binary(max_size=120)), repeat=st.integers(1, 3),
       ranks=st.dictionaries(st.lists(st.sampled_from(b"ab"), min_size=2, max_size=3).map(bytes),
                             st.integers(0, 50), max_size=12))
def test_heap_merge_equals_quadratic_merge(data, repeat, ranks):
    piece = data * repeat + b"ab" * 30 + data
    # long pieces use the heap: it must agree with the plain quadratic scan
    assert byte_pair_merge_heap(piece, ranks) == _quadratic(piece, ranks)
    assert byte_pair_merge(data, ranks) == _quadratic(data, ranks)
    assert b"".join(byte_pair_merge_heap(piece, ranks)) == piece


def _quadratic(piece, ranks):
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        found = [(ranks[parts[i] + parts[i + 1]], i) for i in range(len(parts) - 1)
                 if parts[i] + parts[i + 1] in ranks]
        if not found:
            break
        _, i = min(found)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts
