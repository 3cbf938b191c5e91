"""Encode 1 MB of English with GPT-2's ranks: npgpt's BPETokenizer against tiktoken, one run.

The text is Python's own documentation (``pydoc_data.topics``, in every CPython install),
repeated and cut to 1,000,000 UTF-8 bytes. tiktoken is built offline from the same rank file
with GPT-2's pattern. Both produce the same ids (checked before timing).

GPT-2's rank file is not in the repository; it ships in openai-whisper's source distribution::

    pip download --no-deps --no-binary :all: openai-whisper -d /tmp/whisper_sdist
    tar -xzf /tmp/whisper_sdist/openai_whisper-*.tar.gz -C /tmp --wildcards '*/gpt2.tiktoken'
    NPGPT_GPT2_TIKTOKEN=$(ls /tmp/openai_whisper-*/whisper/assets/gpt2.tiktoken) \\
        python benchmarks/bench_tokenize.py

npgpt caches the ids of each pre-token; "cold" clears that cache before every call (the
first encode of new text), "warm" keeps it (text seen before). tiktoken has no such cache.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import has, interleaved_medians, print_table  # noqa: E402

from npgpt.tokenizers import GPT2_PATTERN, GPT2_SPECIAL_TOKENS, BPETokenizer  # noqa: E402

SIZE = 1_000_000


def english_text(size=SIZE):
    """``size`` bytes of English: Python's documentation topics, repeated as needed."""
    from pydoc_data.topics import topics
    text = "\n".join(topics.values())
    data = (text * (size // len(text.encode("utf-8")) + 1)).encode("utf-8")[:size]
    return data.decode("utf-8", errors="ignore")


def main():
    path = os.environ.get("NPGPT_GPT2_TIKTOKEN")
    if not path or not os.path.exists(path):
        sys.exit("set NPGPT_GPT2_TIKTOKEN to GPT-2's gpt2.tiktoken (see this file's docstring)")
    text = english_text()
    tok = BPETokenizer.from_tiktoken(path, special_tokens=GPT2_SPECIAL_TOKENS)

    def cold():
        tok._cache.clear()
        return tok.encode(text)

    fns = {"npgpt (cold cache)": cold, "npgpt (warm cache)": lambda: tok.encode(text)}
    if has("tiktoken"):
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe
        enc = tiktoken.Encoding("gpt2_local", pat_str=GPT2_PATTERN,
                                mergeable_ranks=load_tiktoken_bpe(path),
                                special_tokens=GPT2_SPECIAL_TOKENS)
        if enc.encode(text) != tok.encode(text):
            sys.exit("npgpt and tiktoken disagree on the benchmark text")
        fns["tiktoken"] = lambda: enc.encode(text)
    else:
        print("tiktoken is not installed: timing npgpt only")

    times = interleaved_medians(fns, repeats=5, warmup=1)
    n_tokens = len(tok.encode(text))
    mb = len(text.encode("utf-8")) / 1e6
    base = times.get("tiktoken")
    rows = [[name, f"{t * 1e3:.1f}", f"{mb / t:.2f}", f"{t / base:.2f}x" if base else "-"]
            for name, t in times.items()]
    print(f"{mb:.2f} MB of English -> {n_tokens} GPT-2 tokens; medians of 5 interleaved runs")
    print_table(rows, ["encoder", "median ms", "MB/s", "time / tiktoken"])


if __name__ == "__main__":
    main()
