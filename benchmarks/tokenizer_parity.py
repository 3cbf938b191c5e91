"""npgpt's tokenizer.json reader against the ``tokenizers`` library: ids, text, speed.

    python benchmarks/tokenizer_parity.py TOKENIZER.json [...] --text FILE [--lines N]

For each ``tokenizer.json`` (a Llama 3, Qwen2, Llama 2, ... file), every line of the text
file, and the whole file, is encoded by both (``add_special_tokens`` on and off) and the ids
compared; the ids of each line are decoded by both (``skip_special_tokens`` on and off) and
the texts compared. It prints, per file: texts and tokens compared, id and text mismatches
(the first few shown), then the time to encode the whole text once with each (npgpt with a
cold word cache, then warm; the library's ``Tokenizer.encode`` on one thread, no batching).

Without a text file it uses the multilingual corpus of the tests
(``tests/fixtures/hf_tokenizers/corpus.json``) repeated to ``--size`` bytes; as that text
repeats, npgpt's word cache warms within one call even when "cold" -- pass ``--text`` with
a long text of your own for fresh words.
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from npgpt.tokenizers.hf import load_tokenizer_json  # noqa: E402

CORPUS = os.path.join(REPO, "tests", "fixtures", "hf_tokenizers", "corpus.json")


def read_texts(path, size):
    """(lines, whole text): of the file at ``path``, or of the tests' corpus repeated to
    ``size`` UTF-8 bytes."""
    if path:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        return text.splitlines(keepends=True), text
    with open(CORPUS, encoding="utf-8") as f:
        lines = json.load(f)
    whole = "\n".join(lines)
    text = (whole + "\n") * (size // len(whole.encode("utf-8")) + 1)
    text = text.encode("utf-8")[:size].decode("utf-8", errors="ignore")
    return text.splitlines(keepends=True), text


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def compare(path, lines, whole, repeats, show=3):
    import tokenizers

    start = time.perf_counter()
    ours = load_tokenizer_json(path)
    load_ours = time.perf_counter() - start
    start = time.perf_counter()
    theirs = tokenizers.Tokenizer.from_file(path)
    load_theirs = time.perf_counter() - start

    texts, tokens, id_bad, text_bad = 0, 0, 0, 0
    for text in lines + [whole]:
        for add in (True, False):
            want = theirs.encode(text, add_special_tokens=add).ids
            got = ours.encode(text, add_special_tokens=add)
            texts, tokens = texts + 1, tokens + len(want)
            if got != want:
                id_bad += 1
                if id_bad <= show:
                    print(f"  ids differ (add_special_tokens={add}) on {text[:60]!r}")
            if len(text) > 10_000:
                continue
            for skip in (True, False):
                if ours.decode(want, skip_special_tokens=skip) != theirs.decode(
                        want, skip_special_tokens=skip):
                    text_bad += 1
                    if text_bad <= show:
                        print(f"  decode differs (skip_special_tokens={skip}) on {text[:60]!r}")

    def cold():
        ours._model._cache.clear()
        ours.encode(whole)
    cold_s = best_of(cold, repeats)
    warm_s = best_of(lambda: ours.encode(whole), repeats)
    lib_s = best_of(lambda: theirs.encode(whole), repeats)
    size = len(whole.encode("utf-8"))
    print(f"{path}\n  {ours!r}; loaded in {load_ours:.2f} s (tokenizers: {load_theirs:.2f} s)")
    print(f"  compared {texts:,} encodes, {tokens:,} tokens: {id_bad} id mismatches, "
          f"{text_bad} decode mismatches")
    print(f"  encode {size:,} bytes: npgpt {cold_s:.3f} s cold, {warm_s:.3f} s warm; "
          f"tokenizers {lib_s:.3f} s -> npgpt is {cold_s / lib_s:.1f}x (cold) / "
          f"{warm_s / lib_s:.1f}x (warm) the library's time")
    return id_bad + text_bad


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokenizer_json", nargs="+")
    parser.add_argument("--text", help="a UTF-8 text file (default: the tests' corpus)")
    parser.add_argument("--size", type=int, default=200_000,
                        help="bytes of the default text (default 200,000)")
    parser.add_argument("--lines", type=int, default=5000, help="compare at most N lines")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    lines, whole = read_texts(args.text, args.size)
    lines = lines[:args.lines]
    bad = sum(compare(p, lines, whole, args.repeats) for p in args.tokenizer_json)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
