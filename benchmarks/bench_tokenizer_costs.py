"""The costs a hostile tokenizer.json or text once made explode: npgpt against ``tokenizers``.

One run, medians of 3 (0.5 s rest before each timed call), npgpt and the library alternately:

- load a byte-level tokenizer.json with 40,000 added tokens;
- cut 2 MB of text around an ``lstrip`` / ``rstrip`` added token (``encode`` on both sides);
- NFC-normalize ``"a"`` and 200,000 combining marks of alternating classes (``encode``);
- ``unicodedata.normalize`` alone on the same text, for scale (not timed above 20,000 marks,
  as it is quadratic: that row uses 20,000).

Run from the repository root: ``python benchmarks/bench_tokenizer_costs.py``.
"""

import json
import os
import random
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import has, interleaved_medians, print_table  # noqa: E402

from npgpt.tokenizers.bpe import bytes_to_unicode  # noqa: E402
from npgpt.tokenizers.hf import HFTokenizer, _example  # noqa: E402
from npgpt.tokenizers.normalize import normalize  # noqa: E402

CHARS = [bytes_to_unicode()[b] for b in range(256)]


def spec(added=(), normalizer=None):
    """The docstrings' byte-level example, without its merges and template, with ``added``
    tokens ``(content, flags)`` after the 256 byte characters."""
    out = _example()
    out["model"]["vocab"] = {c: i for i, c in enumerate(CHARS)}
    out["model"]["merges"], out["post_processor"], out["normalizer"] = [], None, normalizer
    out["added_tokens"] = [dict(out["added_tokens"][1], id=256 + k, content=c, special=True,
                                **flags) for k, (c, flags) in enumerate(added)]
    return out


def main():
    if not has("tokenizers"):
        sys.exit("needs the tokenizers library")
    from tokenizers import Tokenizer
    rng, contents = random.Random(0), set()
    while len(contents) < 40_000:
        contents.add("".join(rng.choice("abcdefghij<|>") for _ in range(rng.randint(2, 12))))
    many = spec([(c, {}) for c in sorted(contents)])
    strip = spec([("<x>", {"lstrip": True, "rstrip": True})])
    nfc = spec(normalizer={"type": "NFC"})
    strip_text = "ab  <x>  " * 230_000
    marks = "a" + "\u0301\u0316" * 100_000
    ours_strip, lib_strip = HFTokenizer(strip), Tokenizer.from_str(json.dumps(strip))
    ours_nfc, lib_nfc = HFTokenizer(nfc), Tokenizer.from_str(json.dumps(nfc))
    assert ours_strip.encode(strip_text) == lib_strip.encode(strip_text).ids
    assert ours_nfc.encode(marks) == lib_nfc.encode(marks).ids
    cases = [
        ("load 40,000 added tokens", lambda: HFTokenizer(many),
         lambda: Tokenizer.from_str(json.dumps(many))),
        ("encode 2 MB, lstrip/rstrip token", lambda: ours_strip.encode(strip_text),
         lambda: lib_strip.encode(strip_text)),
        ("encode NFC, 'a' + 200,000 marks", lambda: ours_nfc.encode(marks),
         lambda: lib_nfc.encode(marks)),
        ("NFC of 'a' + 200,000 marks (npgpt.normalize vs unicodedata, 20,000)",
         lambda: normalize("NFC", marks),
         lambda: unicodedata.normalize("NFC", marks[:20_001])),
    ]
    rows = []
    for name, ours, theirs in cases:
        t = interleaved_medians({"npgpt": ours, "reference": theirs}, repeats=3, warmup=1,
                                pause=0.5)
        rows.append([name, f"{t['npgpt']:.3f}", f"{t['reference']:.3f}",
                     f"{t['npgpt'] / t['reference']:.1f}"])
    print_table(rows, ["case", "npgpt s", "reference s", "ratio"])


if __name__ == "__main__":
    main()
