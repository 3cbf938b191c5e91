"""A ``tokenizer.json`` and the text given to it cannot make npgpt's reader explode.

Each case once made loading or encoding cost far more than the ``tokenizers`` library:

- a normalizer chain that doubles the text 40 times (``encode("a")`` exhausted memory):
  now a ValueError naming the step and the bound;
- 30,000 added tokens (one regex alternation took minutes to compile): now a
  leftmost-longest automaton (:mod:`npgpt.tokenizers.longest_match`), checked against the
  library on random added-token sets;
- ``lstrip`` / ``rstrip`` added tokens in a long text (the text before each match was
  copied): now linear, counted in characters copied;
- NFC of a long run of combining marks (CPython's insertion sort): now in pieces that
  cannot interact and long runs sorted stably (:mod:`npgpt.tokenizers.normalize`),
  equal to ``unicodedata`` on random text;
- a vocabulary entry with a lone surrogate (loaded, then decoding raised
  UnicodeEncodeError): now refused when loading, as the library does.

Wall-clock limits here are generous guards against hangs, not timings.
"""

import json
import random
import re
import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt.io import CheckpointError
from npgpt.tokenizers.bpe import bytes_to_unicode
from npgpt.tokenizers.hf import HFTokenizer, load_tokenizer_json
from npgpt.tokenizers.hf_added_tokens import find_added
from npgpt.tokenizers.longest_match import LongestMatcher
from npgpt.tokenizers.normalize import _LONG_RUN, normalize

GUARD = 60          # seconds: only a hang (or the old quadratic cost) gets near it

CHARS = [bytes_to_unicode()[b] for b in range(256)]


def byte_level(added=(), normalizer=None):
    """A byte-level tokenizer.json: the 256 byte characters, no merges, ``added`` tokens
    (content, flags) numbered after the vocabulary."""
    tokens = [{"id": 256 + k, "content": content, "single_word": False, "lstrip": False,
               "rstrip": False, "normalized": False, "special": True, **flags}
              for k, (content, flags) in enumerate(added)]
    return {"added_tokens": tokens, "normalizer": normalizer,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                              "trim_offsets": True, "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                        "use_regex": True},
            "model": {"type": "BPE", "vocab": {c: i for i, c in enumerate(CHARS)},
                      "merges": []}}


def doubling(steps):
    replace = {"type": "Replace", "pattern": {"String": "a"}, "content": "aa"}
    return {"type": "Sequence", "normalizers": [replace] * steps}


# ----------------------------------------------------------------------------------------
# 1. A normalizer chain may not make more than a bounded multiple of its input
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [24, 40])
def test_a_normalizer_chain_that_doubles_the_text_is_refused_naming_the_step_and_the_bound(
        steps):
    tok = HFTokenizer(byte_level(normalizer=doubling(steps)))          # loading is fine
    with pytest.raises(ValueError, match=r"normalizer\.normalizers\[12\] \(Replace 'a' -> "
                                         r"'aa'\) would make 8,192 characters out of a text "
                                         r"of 1; a normalizer may make at most 64 x the text "
                                         r"\+ 4,096 characters"):
        tok.encode("a")
    assert tok.encode("b" * 10) == [CHARS.index("b")] * 10             # no "a": no growth


def test_the_bound_is_checked_before_the_step_allocates():
    """A single Replace with a huge content is refused from its predicted length."""
    replace = {"type": "Replace", "pattern": {"String": "a"}, "content": "b" * 10 ** 6}
    tok = HFTokenizer(byte_level(normalizer=replace))
    calls = []
    tok._normalizer = [(w, size, lambda t, f=f: calls.append(t) or f(t))
                       for w, size, f in tok._normalizer]
    with pytest.raises(ValueError, match=f"would make {10 ** 10:,} characters"):
        tok.encode("a" * 10 ** 4)
    assert calls == []


def test_a_normalized_added_token_that_explodes_is_a_checkpoint_error_when_loading():
    spec = byte_level(added=[("xa", {"normalized": True, "special": False})],
                      normalizer=doubling(40))
    with pytest.raises(CheckpointError, match=r"added token 'xa': normalizer\.normalizers"):
        HFTokenizer(spec)


def test_real_normalizers_stay_within_the_bound():
    """NFKC's largest expansion (U+FDFA, 18 characters) and a Prepend pass."""
    spec = byte_level(normalizer={"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]})
    tok = HFTokenizer(spec)
    text = "\ufdfa" * 1000
    assert tok.decode(tok.encode(text)) == "▁" + unicodedata.normalize("NFKC", text).replace(
        " ", "▁")


# ----------------------------------------------------------------------------------------
# 2. Many added tokens: an automaton, the same matches as the library
# ----------------------------------------------------------------------------------------

def _random_tokens(n, seed=0):
    rng, out = random.Random(seed), set()
    while len(out) < n:
        out.add("".join(rng.choice("abcdefghij<|>") for _ in range(rng.randint(2, 12))))
    return sorted(out)


def test_forty_thousand_added_tokens_load_and_encode():
    contents = _random_tokens(40_000)
    start = time.perf_counter()
    tok = HFTokenizer(byte_level(added=[(c, {}) for c in contents]))
    ids = tok.encode("\n".join(contents[::1000]))
    assert time.perf_counter() - start < GUARD
    newline = CHARS.index("\u010a")
    assert ids == [i for c in contents[::1000] for i in (tok.token_to_id(c), newline)][:-1]


def test_loading_compiles_no_regex_that_grows_with_the_number_of_tokens(monkeypatch):
    """The old reader compiled one alternation of every token (40,000: 73 s)."""
    compiled = []
    real = re.compile
    monkeypatch.setattr(re, "compile", lambda p, *a: compiled.append(len(p)) or real(p, *a))
    tokens = [(c, {}) for c in _random_tokens(3000)]
    HFTokenizer(byte_level(added=tokens)).encode("abc<|>")
    assert max(compiled, default=0) < 1000


def _leftmost_longest(text, patterns):
    """The definition: the match starting first, the longest there, then on after it."""
    out, i = [], 0
    while i < len(text):
        here = [p for p in patterns if text.startswith(p, i)]
        if here:
            p = max(here, key=len)
            out.append((i, i + len(p), p))
            i += len(p)
        else:
            i += 1
    return out


@settings(max_examples=200)
@given(patterns=st.sets(st.text("abc<", min_size=1, max_size=5), min_size=1, max_size=12),
       text=st.text("abc<d", max_size=40))
def test_longest_matcher_finds_the_leftmost_longest_matches(patterns, text):
    assert LongestMatcher(patterns).find_iter(text) == _leftmost_longest(text, patterns)


def test_longest_matcher_is_linear_on_a_prefix_that_never_ends():
    """One pattern "a" * 1000 + "b" and a text of "a"s: a trie walk from each position
    would take 1000 steps each; the automaton takes one per character."""
    matcher = LongestMatcher(["a" * 1000 + "b", "aa"])
    text = "a" * 200_001
    start = time.perf_counter()
    found = matcher.find_iter(text)
    assert time.perf_counter() - start < GUARD
    assert len(found) == 100_000 and found[-1] == (199_998, 200_000, "aa")


_FLAGS = st.fixed_dictionaries({"single_word": st.booleans(), "lstrip": st.booleans(),
                                "rstrip": st.booleans(), "normalized": st.booleans(),
                                "special": st.booleans()})
_CONTENT = st.text(st.sampled_from("ab <>\n\u00e9"), min_size=2, max_size=5)
_NORMALIZERS = st.sampled_from([None, {"type": "NFD"},
                                {"type": "Replace", "pattern": {"String": " "},
                                 "content": "\u2581"}])


@settings(max_examples=150)
@given(added=st.lists(st.tuples(_CONTENT, _FLAGS), min_size=1, max_size=10,
                      unique_by=lambda t: t[0]),
       normalizer=_NORMALIZERS,
       texts=st.lists(st.text(st.sampled_from("ab <>\n\u00e9e\u0301x"), max_size=30),
                      min_size=1, max_size=5))
def test_live_added_token_matching_matches_the_tokenizers_library(added, normalizer, texts):
    tokenizers = pytest.importorskip("tokenizers")
    spec = byte_level(added=added, normalizer=normalizer)
    try:
        ours = HFTokenizer(spec)
    except CheckpointError as e:
        assert "match the same text" in str(e)            # two tokens equal once normalized
        return
    lib = tokenizers.Tokenizer.from_str(json.dumps(spec))
    for text in texts + ["".join(texts), " ".join(c for c, _ in added)]:
        try:
            expected = lib.encode(text).ids
        except BaseException as error:            # the library's own panic ("AddedVocabulary bad
            if type(error).__name__ != "PanicException":   # split") on some overlapping sets:
                raise                             # no reference to compare with for this text
            continue
        assert ours.encode(text) == expected, text


# ----------------------------------------------------------------------------------------
# 3. lstrip / rstrip: linear in the text
# ----------------------------------------------------------------------------------------

class CountingStr(str):
    """A str that counts the characters copied by slicing it."""
    copied = 0

    def __getitem__(self, key):
        out = str.__getitem__(self, key)
        CountingStr.copied += len(out)
        return out


@pytest.mark.parametrize("flags", [{"lstrip": True}, {"rstrip": True},
                                   {"lstrip": True, "rstrip": True}])
def test_stripping_added_tokens_copy_a_linear_amount_of_text(flags):
    tok = HFTokenizer(byte_level(added=[("<x>", flags)]))
    text = CountingStr("ab  <x>  " * 20_000)
    CountingStr.copied = 0
    found = find_added(text, tok._raw)
    assert sum(token is not None for _, _, token in found) == 20_000
    assert CountingStr.copied <= 2 * len(text)


def test_rstrip_over_a_whitespace_token_is_linear():
    """A whitespace token with rstrip inside a long run of whitespace: each run is
    measured once, however many matches fall inside it."""
    tok = HFTokenizer(byte_level(added=[("\n", {"rstrip": True})]))
    text = CountingStr("\n" * 200_000 + "x")
    CountingStr.copied = 0
    start = time.perf_counter()
    found = find_added(text, tok._raw)
    assert time.perf_counter() - start < GUARD
    assert CountingStr.copied <= 2 * len(text)
    assert found[0] == (0, 200_000, tok._raw[1]["\n"]) and found[-1] == (200_000, 200_001, None)


def test_two_megabytes_with_stripping_tokens_are_cut_out():
    tok = HFTokenizer(byte_level(added=[("<x>", {"lstrip": True, "rstrip": True})]))
    text = "ab  <x>  " * 230_000                                       # 2 MB
    start = time.perf_counter()
    pieces = [piece for piece, _, _ in tok._segments(text)]        # added tokens cut out
    assert time.perf_counter() - start < GUARD
    assert pieces[:3] == ["ab", "  <x>  ", "ab"] and len(pieces) == 2 * 230_000


# ----------------------------------------------------------------------------------------
# 4. Unicode normalization: linear, and equal to unicodedata
# ----------------------------------------------------------------------------------------

_MARKS = "\u0301\u0316\u0300\u0323\u0308\u0327\u05b0\u0f71\u0f72\u302a\u1dfe\u0345"
_SPECIAL = ("a e o \u0391\u0399\u1100\u1161\u11a8\uac00\u0b47\u0b3e\u0f73\u0f75\u00e9\u212b"
            "\ufb01\ufdfa\u1e0a\u0344\u0340\u2126\U0001d15e\U0001d165\U0001d16d\u0cd5\u0cc6")
_UNICODE = st.text(st.one_of(st.sampled_from(_MARKS + _SPECIAL), st.characters()), max_size=80)


@pytest.mark.parametrize("form", ["NFC", "NFD", "NFKC", "NFKD"])
@settings(max_examples=300)
@given(text=_UNICODE, long_run=st.sampled_from([1, 2, 3, _LONG_RUN]))
def test_normalizing_in_pieces_equals_unicodedata(form, text, long_run):
    assert normalize(form, text, long_run=long_run) == unicodedata.normalize(form, text)


@pytest.mark.parametrize("form", ["NFC", "NFKC"])
@settings(max_examples=100)
@given(pieces=st.lists(st.tuples(st.sampled_from(_SPECIAL.replace(" ", "") + "xyz"),
                                 st.text(st.sampled_from(_MARKS + "\u1161\u11a8\u0b3e"),
                                         max_size=150)), max_size=4))
def test_normalizing_long_runs_of_marks_equals_unicodedata(form, pieces):
    text = "".join(a + b for a, b in pieces)
    assert normalize(form, text) == unicodedata.normalize(form, text)


def _longest_unordered_run(text):
    """The longest run of non-starters that is not in canonical order."""
    longest, run = 0, []
    for c in text + "a":
        if unicodedata.combining(c):
            run.append(unicodedata.combining(c))
            continue
        if run != sorted(run):
            longest = max(longest, len(run))
        run = []
    return longest


def test_nfc_of_many_combining_marks_never_hands_unicodedata_a_long_unordered_run(monkeypatch):
    """CPython orders marks with an insertion sort: "a" and 40,000 marks of alternating
    classes took 1.8 s, 200,000 about forty. Every string npgpt passes it is ordered or
    short."""
    longest = []
    real = unicodedata.normalize
    monkeypatch.setattr(unicodedata, "normalize",
                        lambda form, s: longest.append(_longest_unordered_run(s)) or real(form, s))
    tok = HFTokenizer(byte_level(normalizer={"type": "NFC"}))
    text = "a" + "\u0301\u0316" * 100_000
    start = time.perf_counter()
    words = tok.pretokenize(text)
    assert time.perf_counter() - start < GUARD
    assert max(longest) < _LONG_RUN + 1
    nfc = "\u00e1" + "\u0316" * 100_000 + "\u0301" * 99_999    # marks ordered, one composed
    assert "".join(words) == "".join(CHARS[b] for b in nfc.encode("utf-8"))


# ----------------------------------------------------------------------------------------
# 5. Lone surrogates are refused when loading
# ----------------------------------------------------------------------------------------

def test_a_vocabulary_entry_with_a_lone_surrogate_is_refused_naming_it():
    spec = byte_level()
    spec["model"]["vocab"]["\ud800x"] = 256
    with pytest.raises(CheckpointError, match=r"model\.vocab: the key '\\ud800x' holds a lone "
                                              r"surrogate"):
        HFTokenizer(spec)


def test_an_added_token_or_a_decoder_with_a_lone_surrogate_is_refused(tmp_path):
    spec = byte_level(added=[("<\udc00>", {})])
    with pytest.raises(CheckpointError, match=r"added_tokens\[0\]\.content: '<\\udc00>'"):
        HFTokenizer(spec)
    spec = byte_level()
    spec["decoder"] = {"type": "Replace", "pattern": {"String": "a"}, "content": "\udfff"}
    with pytest.raises(CheckpointError, match=r"decoder\.content"):
        HFTokenizer(spec)
    path = tmp_path / "tokenizer.json"                   # as a file: a JSON \\ud800 escape
    spec = byte_level()
    spec["model"]["vocab"]["\ud800x"] = 256
    path.write_text(json.dumps(spec), encoding="ascii")
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: model\.vocab: the key"):
        load_tokenizer_json(str(path))


def test_live_the_tokenizers_library_refuses_the_same_file():
    tokenizers = pytest.importorskip("tokenizers")
    spec = byte_level()
    spec["model"]["vocab"]["\ud800x"] = 256
    with pytest.raises(Exception):
        tokenizers.Tokenizer.from_str(json.dumps(spec))
