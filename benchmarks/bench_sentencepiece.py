"""Encode 200 kB of text with a SentencePiece model: npgpt's SentencePieceTokenizer against the
``sentencepiece`` library, one run; and the parity count over that text.

The text: the multilingual test corpus (``tests/fixtures/hf_tokenizers/corpus.json``) followed
by Python's documentation topics (``pydoc_data.topics``), cut to 200,000 UTF-8 bytes. The model:
``SP_MODEL`` (default Llama 2's ``tokenizer.model`` under ``../shared/tokenizers/llama2``), or
the bundled ``tok512`` when that is not there (via a .model npgpt writes from ``tok512.bin``).

npgpt caches the ids of each chunk of normalized text (the text cut before each "▁" that
follows another character); "cold" clears the cache before every call, "warm" keeps it.
"merge loop only" runs the readable merge loop over the whole normalized text, without the
chunks (what the library does). The ids are compared before timing::

    python benchmarks/bench_sentencepiece.py
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from common import has, interleaved_medians, print_table  # noqa: E402

from npgpt.tokenizers import SentencePieceTokenizer  # noqa: E402

SIZE = 200_000
MODEL = os.environ.get("SP_MODEL", os.path.join(REPO, "..", "shared", "tokenizers", "llama2",
                                               "tokenizer.model"))


def sample_text(size=SIZE):
    from pydoc_data.topics import topics
    with open(os.path.join(REPO, "tests", "fixtures", "hf_tokenizers", "corpus.json"),
              encoding="utf-8") as f:
        corpus = "\n".join(json.load(f))
    text = corpus + "\n" + "\n".join(topics[k] for k in sorted(topics))
    return text.encode("utf-8")[:size].decode("utf-8", errors="ignore")


def main():
    if not has("sentencepiece"):
        sys.exit("the sentencepiece library is not installed")
    import sentencepiece as spm
    if os.path.exists(MODEL):
        tok = SentencePieceTokenizer.from_model_file(MODEL)
        lib = spm.SentencePieceProcessor(model_file=MODEL)
        name = os.path.basename(os.path.dirname(MODEL)) + "/" + os.path.basename(MODEL)
    else:
        d = SentencePieceTokenizer.from_llama2c(os.path.join(REPO, "npgpt", "data",
                                                             "tok512.bin")).to_dict()
        d.update(pieces=[p.replace(" ", "\u2581") for p in d["pieces"]], escape_whitespaces=True,
                 decoding="sentencepiece")
        tok = SentencePieceTokenizer.from_dict(d)
        lib = spm.SentencePieceProcessor(model_proto=tok.to_model_proto())
        name = "tok512 (bundled)"
    text = sample_text()
    ours, theirs = tok.encode(text, add_bos=False), lib.encode(text)
    mismatched = sum(a != b for a, b in zip(ours, theirs)) + abs(len(ours) - len(theirs))
    print(f"{name}: {len(text.encode('utf-8')):,} bytes -> {len(theirs):,} tokens; "
          f"npgpt == sentencepiece: {ours == theirs} ({mismatched} positions differ)")
    if ours != theirs:
        sys.exit("npgpt and sentencepiece disagree on the benchmark text")

    def cold():
        tok._cache.clear()
        return tok.encode(text, add_bos=False)

    def merge_loop_only():
        from npgpt.tokenizers.sentencepiece import merge_pieces
        return merge_pieces(list(tok.normalize(text)), tok._mergeable)

    fns = {"sentencepiece": lambda: lib.encode(text), "npgpt (cold cache)": cold,
           "npgpt (warm cache)": lambda: tok.encode(text, add_bos=False),
           "npgpt merge loop only": merge_loop_only}
    time.sleep(0.5)
    times = interleaved_medians(fns, repeats=5, warmup=1, pause=0.5)
    base = times["sentencepiece"]
    kb = len(text.encode("utf-8")) / 1e3
    rows = [[n, f"{t * 1e3:.1f}", f"{kb / t / 1e3:.2f}", f"{t / base:.1f}x"]
            for n, t in times.items()]
    print(f"medians of 5 interleaved runs; load: {os.getloadavg()[0]:.2f}")
    print_table(rows, ["encoder", "median ms", "MB/s", "time / sentencepiece"])


if __name__ == "__main__":
    main()
