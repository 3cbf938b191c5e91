"""Stop strings in beam search and beam sampling: a candidate whose new text contains a stop
string ends as one ending in EOS does (npgpt/beam_search.py's module docstring).

- A reference beam search written out for one prompt at a time (a forward pass over the
  whole sequence per beam, the whole new text decoded for each candidate) returns the same
  hypotheses and scores, with and without EOS, the stop string kept or left out, every
  length penalty and early-stopping mode.
- Scripted models: the stop string in the best hypothesis, kept (at its very end) or left
  out; left out, the same hypotheses, order and scores as kept, each cut before its stop
  string (one cut to no token is not favoured); every candidate ending at once.
- Every returned hypothesis, beam search or beam sampling: a stop string only completed by
  its last token (kept) or nowhere (left out: the hypothesis kept, cut), its score
  recomputed from the model (left out: from the tokens as found, the stop string's too).
- Live parity with transformers' beam search (4.50 on), which ends a beam at a stop string
  the same way.
"""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt import beam_search as bs
from npgpt import sampling
from npgpt.generation import generate, stream
from npgpt.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer

from helpers import skip_without
from test_processors import WORD_SCRIPT, WORDS, _permutation_through, scripted_model

CHARS = "abcdefghijklmnopq"                                    # 17 tokens


def stop_model(seed, dtype=np.float32):
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=17, context_length=40, d_model=16, num_heads=2,
                                      num_layers=1), seed=seed, dtype=dtype)
    model.tokenizer = CharTokenizer(CHARS)
    return model


def text_of(model, tokens):
    return model.tokenizer.decode([int(t) for t in tokens])


def hypotheses(out, b, K, P):
    """Prompt b's returned hypotheses [(score, new tokens)], best first (num_return_sequences=K)."""
    rows = range(b * K, (b + 1) * K)
    return [(out.scores[r], tuple(out.sequences[r, P:P + out.num_new_tokens[r]].tolist())) for r in rows]


# ---------------------------------------------------------------- the reference search
def log_probs(model, seq):
    """The next-token log-probabilities after seq, float32, as beam search computes them."""
    logits = model(np.array(seq))[-1]
    z = (logits - logits.max()).astype(np.float32)
    return z - np.log(np.exp(z).sum())


def stop_start(tokenizer, tokens, stops):
    """The byte where the first stop string starts in the decoded text of tokens, or None."""
    text = tokenizer.decode(list(tokens)).encode("utf-8")
    starts = [i for i in (text.find(s.encode("utf-8")) for s in stops) if i >= 0]
    return min(starts) if starts else None


def reference_beam_search(model, prompt, K, n_steps, stops, include, eos, alpha, early):
    """Beam search for one prompt, as transformers' rules read: the best Kc = max(2, 1 + n_eos)
    * K candidates; those of the top K that end (EOS, a stop string in their whole decoded
    new text, the last step) join the finished hypotheses (when the prompt can still improve
    and, early_stopping=True, is not full); the first K others continue; stop when the best
    running beam cannot beat the worst finished hypothesis. Scores in float32 as npgpt's.
    Without ``include`` a hypothesis is found and scored the same, then cut: it returns the
    tokens that end at or before its stop string's first byte.
    Returns the finished hypotheses [(score, new tokens)], best first."""
    f32, tok, V = np.float32, model.tokenizer, model.config.vocab_size
    beams = [((), f32(0.0))]                                 # (new tokens, running score)
    finished, improvable = [], True
    for step in range(n_steps):
        candidates = []
        for tokens, running in beams:
            logp = log_probs(model, list(prompt) + list(tokens))
            candidates += [(running + logp[t], tokens + (t,)) for t in range(V)]
        candidates = sorted(candidates, key=lambda c: -c[0])[:max(2, 1 + len(eos)) * K]
        new, continuing = [], []
        for i, (score, tokens) in enumerate(candidates):
            start = None if stops is None else stop_start(tok, tokens, stops)
            if not (step == n_steps - 1 or tokens[-1] in eos or start is not None):
                continuing.append((tokens, score))
                continue
            n = len(tokens)
            if start is not None and not include:   # the tokens that end before the stop string
                n = max(k for k in range(len(tokens)) if len(tok.decode(list(tokens[:k])).encode()) <= start)
            if i < K:
                new.append((f32(score) / f32(len(tokens) ** alpha), tokens[:n]))
        if improvable and not (len(finished) == K and early is True):
            finished = sorted(finished + new, key=lambda h: -h[0])[:K]
        beams = continuing[:K]
        if step == n_steps - 1 or not beams:
            break
        length = n_steps if early == "never" and alpha > 0 else step + 1
        worst = min(h[0] for h in finished) if len(finished) == K else f32(bs._DEAD)
        improvable = improvable and beams[0][1] / f32(length ** alpha) > worst
        if not improvable or (early is True and len(finished) == K):
            break
    return finished


@settings(max_examples=40)
@given(st.integers(0, 10_000), st.sampled_from([2, 3]), st.booleans(), st.sampled_from([(), (4,), (4, 9)]),
       st.sampled_from([0.0, 1.0, 2.0]), st.sampled_from([True, False, "never"]), st.data())
def test_beam_search_with_stop_strings_equals_the_reference_search(seed, K, include, eos, alpha, early, data):
    model = stop_model(seed % 5, dtype=np.float64)
    prompts = np.random.default_rng(seed).integers(0, 17, size=(2, 3))    # two prompts, one batch
    free = generate(model, prompts, max_new_tokens=6, num_beams=K, num_return_sequences=K)
    texts = [text_of(model, row[3:]) for row in free.sequences]
    where = st.tuples(st.integers(0, len(texts) - 1), st.integers(0, 5), st.integers(1, 3))
    picked = data.draw(st.lists(where, min_size=1, max_size=2))
    stops = [texts[r][i:i + n] for r, i, n in picked if texts[r][i:i + n]]     # met by some beam
    stops += data.draw(st.lists(st.text(CHARS, min_size=1, max_size=2), max_size=2))
    out = generate(model, prompts, max_new_tokens=6, num_beams=K, num_return_sequences=K,
                   stop_strings=stops, include_stop_string=include, eos_token_id=list(eos) or None,
                   pad_token_id=0, length_penalty=alpha, early_stopping=early)
    for b in range(2):
        expected = reference_beam_search(model, prompts[b].tolist(), K, 6, stops, include, eos, alpha, early)
        got = hypotheses(out, b, K, 3)
        assert [tokens for _, tokens in got] == [tokens for _, tokens in expected], (b, stops)
        np.testing.assert_allclose([s for s, _ in got], [s for s, _ in expected], rtol=0, atol=1e-6)
        for r in range(b * K, (b + 1) * K):                                  # padding after
            assert (out.sequences[r, 3 + out.num_new_tokens[r]:] == 0).all()


def test_the_reference_search_is_beam_search_without_stop_strings():
    """Without stop strings the reference agrees with npgpt's beam search as it was before
    stop strings (its own tests hold it to transformers), so the comparison above tests the
    stop strings."""
    cases = itertools.product(range(3), [2, 3], [(), (4,)], [0.0, 2.0], [True, "never"])
    for seed, K, eos, alpha, early in cases:
        model = stop_model(seed, dtype=np.float64)
        out = generate(model, [seed, 5, 7], max_new_tokens=5, num_beams=K, num_return_sequences=K,
                       eos_token_id=list(eos) or None, pad_token_id=0, length_penalty=alpha,
                       early_stopping=early)
        expected = reference_beam_search(model, [seed, 5, 7], K, 5, None, True, eos, alpha, early)
        assert [t for _, t in hypotheses(out, 0, K, 3)] == [t for _, t in expected]
        np.testing.assert_allclose(out.scores, [s for s, _ in expected], rtol=0, atol=1e-6)


# ------------------------------------------------------------------- scripted models
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_stop_string_in_the_best_hypothesis_ends_it_kept_at_its_end_or_left_out(alpha):
    """The script "the cat sat on a mat the cat" is the best beam (length_penalty <= 1:
    larger ones favour the longer hypotheses off the script); "on a" ends it after 5 tokens,
    scored as greedy's 5 tokens over 5 ** alpha, kept or left out (then 3 tokens returned)."""
    model = scripted_model(WORD_SCRIPT, WordTokenizer(WORDS))
    options = dict(max_new_tokens=8, num_beams=3, num_return_sequences=3, length_penalty=alpha)
    plain = generate(model, [4], **options)
    assert model.tokenizer.decode(plain.sequences[0, 1:]) == "the cat sat on a mat the cat"
    kept = generate(model, [4], stop_strings="on a", **options)
    dropped = generate(model, [4], stop_strings="on a", include_stop_string=False, **options)
    assert model.tokenizer.decode(kept.sequences[0, 1:1 + kept.num_new_tokens[0]]) == "the cat sat on a"
    assert model.tokenizer.decode(dropped.sequences[0, 1:1 + dropped.num_new_tokens[0]]) == "the cat sat"
    greedy = generate(model, [4], max_new_tokens=5)
    np.testing.assert_allclose(kept.scores[0], greedy.scores[0] / 5 ** alpha, rtol=1e-6)
    np.testing.assert_array_equal(dropped.scores, kept.scores)
    for r in range(3):                      # every hypothesis: "on a" at its end, or nowhere
        text = model.tokenizer.decode(kept.sequences[r, 1:1 + kept.num_new_tokens[r]])
        assert "on a" not in text or (text.endswith("on a") and text.count("on a") == 1)
        assert "on a" not in model.tokenizer.decode(dropped.sequences[r, 1:1 + dropped.num_new_tokens[r]])


def test_a_stop_string_split_inside_a_utf8_character_ends_a_beam_at_its_last_byte():
    """Byte-level BPE: "é" is two byte tokens; the best beam ends when the second arrives."""
    text = "hé!".encode("utf-8")                                  # 68 C3 A9 21
    model = scripted_model(_permutation_through([ord("x")] + list(text)), BPETokenizer([]))
    for stop, include, n in (("é", True, 3), ("é", False, 1), ("é!", False, 1), ("!", True, 4)):
        out = generate(model, [ord("x")], max_new_tokens=5, num_beams=2, stop_strings=stop,
                       include_stop_string=include)
        assert out.num_new_tokens.tolist() == [n], (stop, include)
        assert bytes(out.sequences[0, 1:1 + n].tolist()) == text[:n]


def test_left_out_the_same_hypotheses_rank_in_the_same_order_with_the_same_scores_cut():
    """include_stop_string=False finds and ranks the hypotheses as True does, then cuts each
    before its stop string. From "mat" the script's first token is "the": with the stop string
    "the" left out, that hypothesis returns no token, scored as the one token "the" was; it
    ranks first only where "the" does (length_penalty <= 1), not above it (with 2, "cat sat on
    a" / 4 ** 2 is better), so an empty answer does not win by being empty."""
    model = scripted_model(WORD_SCRIPT, WordTokenizer(WORDS))
    tok = model.tokenizer
    for alpha, empty_rank in ((0.0, 0), (1.0, 0), (2.0, 3)):
        options = dict(max_new_tokens=4, num_beams=4, num_return_sequences=4, stop_strings="the",
                       length_penalty=alpha)
        kept = generate(model, [4], **options)
        dropped = generate(model, [4], include_stop_string=False, **options)
        np.testing.assert_array_equal(dropped.scores, kept.scores)
        texts = [tok.decode(r[1:1 + n]) for r, n in zip(kept.sequences, kept.num_new_tokens)]
        cut = [tok.decode(r[1:1 + n]) for r, n in zip(dropped.sequences, dropped.num_new_tokens)]
        assert cut == [t[:t.index("the")].rstrip() if "the" in t else t for t in texts], alpha
        assert texts[empty_rank] == "the" and dropped.num_new_tokens[empty_rank] == 0
        assert (dropped.sequences[empty_rank, 1:] == 0).all()
        the = generate(model, [4], max_new_tokens=1).scores[0]           # "the" alone
        np.testing.assert_allclose(dropped.scores[empty_rank], the, rtol=1e-6)


@pytest.mark.parametrize("include", [True, False])
def test_when_every_candidate_ends_the_beams_die_and_the_search_stops(include):
    """Every character is a stop string: the first step's best K candidates are the K
    hypotheses (with the stop string left out, each cut to no token, scored the same), no
    beam continues and the search stops after that step."""
    model, K, steps = stop_model(1), 3, []
    out = generate(model, [1, 2, 3], max_new_tokens=6, num_beams=K, num_return_sequences=K,
                   stop_strings=list(CHARS), include_stop_string=include, callback=lambda *a: steps.append(a))
    assert len(steps) == 1
    logp = log_probs(model, [1, 2, 3])
    best = np.argsort(-logp, kind="stable")[:K]
    np.testing.assert_allclose(out.scores, logp[best], rtol=0, atol=1e-6)
    if include:
        assert out.sequences[:, 3:].ravel().tolist() == best.tolist()
    else:                                  # each cut to no token
        assert out.num_new_tokens.tolist() == [0] * K and out.sequences.tolist() == [[1, 2, 3]] * K


# ------------------------------------------------------------- every hypothesis, properties
def recomputed_score(model, row, P, n, temperature, alpha):
    """sum of the model's log p of the n new tokens (over temperature) / n ** alpha."""
    logp = sampling.log_softmax(model(np.asarray(row[:P + n])).astype(np.float64))
    return sum(logp[t - 1, row[t]] for t in range(P, P + n)) / temperature / n ** alpha


@settings(max_examples=30)
@given(st.integers(0, 10_000), st.sampled_from([2, 3, 4]), st.booleans(), st.sampled_from([None, 4]),
       st.sampled_from([0.0, 1.0, 2.0]), st.sampled_from([None, 0.7, 1.5]), st.data())
def test_every_hypothesis_ends_at_its_stop_string_and_is_scored_as_recomputed(
        seed, K, include, eos, alpha, temperature, data):
    """Beam search (temperature None) and beam sampling: a hypothesis's text holds a stop
    string only completed by its last token; without one, it ended by EOS or length. Its
    score is its tokens' log p (over T) / n ** alpha. Left out (``include`` False), the same
    hypotheses with the same scores, each cut before its stop string's first byte."""
    model, n_steps = stop_model(seed % 5, dtype=np.float64), 7
    prompt = np.random.default_rng(seed).integers(0, 17, size=3).tolist()
    stops = data.draw(st.lists(st.text(CHARS, min_size=1, max_size=2), min_size=1, max_size=4))
    sample = {} if temperature is None else dict(do_sample=True, seed=seed, temperature=temperature)
    options = dict(max_new_tokens=n_steps, num_beams=K, num_return_sequences=data.draw(st.integers(1, K)),
                   stop_strings=stops, eos_token_id=eos, pad_token_id=0, length_penalty=alpha, **sample)
    found = generate(model, prompt, **options)                        # the stop strings kept
    out = found if include else generate(model, prompt, include_stop_string=False, **options)
    assert (np.diff(out.scores) <= 1e-6).all(), "hypotheses not best first"
    np.testing.assert_array_equal(out.scores, found.scores)
    for row, n, full, n_full, score in zip(out.sequences.tolist(), out.num_new_tokens.tolist(),
                                           found.sequences.tolist(), found.num_new_tokens.tolist(), out.scores):
        new = full[3:3 + n_full]
        assert all(t == 0 for t in row[3 + n:]) and row[:3 + n] == full[:3 + n]
        assert not any(s in text_of(model, new[:-1]) for s in stops)
        start = stop_start(model.tokenizer, new, stops)
        if start is None:
            assert (n_full == n_steps or new[-1] == eos) and n == n_full
        elif not include:                  # the tokens that end at or before the stop string
            assert len(text_of(model, new[:n]).encode()) <= start < len(text_of(model, new[:n + 1]).encode())
        expected = recomputed_score(model, full, 3, n_full, temperature or 1.0, alpha)   # as found
        np.testing.assert_allclose(score, expected, rtol=1e-5, atol=1e-4)


def test_stream_with_beams_and_stop_strings_ends_with_generates_best_hypothesis():
    model = scripted_model(WORD_SCRIPT, WordTokenizer(WORDS))
    options = dict(max_new_tokens=8, num_beams=2, stop_strings="on a", include_stop_string=False)
    yields = [t.tolist() for t in stream(model, [[4], [1]], **options)]
    out = generate(model, [[4], [1]], **options)
    assert yields[-1] == out.sequences[:, 1:].tolist()
    assert [model.tokenizer.decode(r[1:1 + n]) for r, n in zip(out.sequences, out.num_new_tokens)] == \
        ["the cat sat", "sat"]
    assert yields[0] == [[0], [2]]                 # the best running beams, as without stop strings


# ------------------------------------------------------------------------ live parity
@pytest.mark.transformers
@skip_without("transformers")
def test_beam_search_with_stop_strings_matches_live_transformers():
    """transformers' beam search ends a beam at a stop string like npgpt's (the stop string
    kept). Stop strings here cannot start in the prompt, where the two differ."""
    import test_processors as TP
    model = TP.char_model(0)
    hf, tokenizer = TP.F.D.to_hf_gpt2(model), TP.F.hf_char_tokenizer()
    checked = 0
    for seed, K, eos in itertools.product(range(3), [2, 3], [None, 7]):
        prompt = np.random.default_rng(seed).integers(0, 30, size=5).tolist()
        free = generate(model, prompt, max_new_tokens=12, num_beams=K, num_return_sequences=K)
        texts = [text_of(model, r[5:5 + n]) for r, n in zip(free.sequences, free.num_new_tokens)]
        for stops in ([texts[0][4]], [texts[-1][6], texts[0][2]], [texts[0][3:5]]):
            before = text_of(model, prompt)
            if any(before.endswith(s[:i]) for s in stops for i in range(1, len(s))):
                continue                                     # could start in the prompt
            options = dict(max_new_tokens=12, num_beams=K, num_return_sequences=K, stop_strings=stops,
                           eos_token_id=eos, pad_token_id=29, length_penalty=float(seed))
            seqs, scores = TP.F.run_transformers_generate(hf, prompt, options, tokenizer)
            out = generate(model, prompt, **options)
            width = max(len(seqs[0]), out.sequences.shape[1])
            theirs = [[29 if t < 0 else t for t in r] + [29] * (width - len(r)) for r in seqs]
            ours = [r + [29] * (width - len(r)) for r in out.sequences.tolist()]
            assert ours == theirs, (seed, K, eos, stops)
            np.testing.assert_allclose(out.scores, scores, rtol=0, atol=1e-4)
            checked += 1
    assert checked >= 20
