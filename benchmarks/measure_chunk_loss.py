"""What ``context_overflow="chunk"`` costs in loss: the bundled model's mean next-token loss on
tinyshakespeare's validation text, with the history each mode gives the model.

    python benchmarks/measure_chunk_loss.py [--data PATH] [--stretches 5] [--length 2000]

The validation text is the last 10% of tinyshakespeare.txt (the split ``npgpt train`` makes).
From it, ``--stretches`` stretches of ``--length`` tokens, evenly spaced, are read with teacher
forcing: token by token, exactly as ``generate`` feeds its own tokens (npgpt's Decoder), and
each prediction's loss -log p(next token) is kept. The exact mode predicts from the last
``context_length`` tokens; the chunk mode from between ``context_length // 2`` and
``context_length`` of them (a chunk that restarts from its newest half when full). The two
agree while the history fits in the context, so the table compares the positions past it,
and also breaks the chunk mode's loss down by how much history it had.

Without the data file it prints why and exits 0: the data is not in the repository; pass
``--data`` or put tinyshakespeare.txt in ``../shared/data/`` next to the repository.
"""

import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import npgpt  # noqa: E402
from common import print_table  # noqa: E402
from npgpt._decoder import Decoder  # noqa: E402
from npgpt.sampling import log_softmax  # noqa: E402

DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "tinyshakespeare.txt")


def validation_ids(model, path):
    """The last 10% of the text, encoded with the model's tokenizer, int64 (N,)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return np.array(model.tokenizer.encode(text[int(0.9 * len(text)):]), dtype=np.int64)


def teacher_forced_losses(model, tokens, overflow):
    """-log p(tokens[t + 1] | the history ``overflow`` gives), for t = 0 .. len - 2, float64.

    Examples
    --------
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=5, context_length=4, d_model=8,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> teacher_forced_losses(model, [1, 2, 3], "chunk").shape
    (2,)
    """
    n = len(tokens) - 1
    decoder = Decoder(model, np.asarray(tokens[:1])[None, :], None, max_new=n, pad=0,
                      overflow=overflow)
    logits = decoder.first()
    losses = np.empty(n)
    for t in range(n):
        losses[t] = -log_softmax(logits[0].astype(np.float64))[tokens[t + 1]]
        if t + 1 < n:
            decoder.append(np.array([tokens[t + 1]]))
            logits = decoder.step()
    return losses


def history_lengths(n, C):
    """How many tokens the chunk mode's model sees at each of n predictions (the first from
    one token): t + 1 while it fits, then between C // 2 and C."""
    keep, seen = max(1, C // 2), []
    length = 0
    for _ in range(n):
        length = length + 1 if length < C else keep
        seen.append(length)
    return np.array(seen)


def report(exact, chunk, C):
    """Print the two modes' mean losses past the context (exact, chunk: (stretches, length))
    and the chunk mode's by the tokens it saw."""
    stretches, length = exact.shape
    past = np.arange(length) >= C                                # the history passed the context
    assert np.allclose(exact[:, ~past], chunk[:, ~past], rtol=0, atol=1e-4)

    def row(name, losses):
        per_stretch = losses.mean(axis=1)
        sem = f"{per_stretch.std(ddof=1) / np.sqrt(stretches):.4f}" if stretches > 1 else "-"
        return [name, f"{losses.mean():.4f}", sem, f"{np.exp(losses.mean()):.3f}"]
    print(f"the bundled model (context {C}) on tinyshakespeare's validation text: {stretches} "
          f"stretches of {length} tokens, teacher forcing; {int(past.sum())} predictions per "
          f"stretch past the context:")
    exact, chunk = exact[:, past], chunk[:, past]
    print_table([row(f"exact (the last {C} tokens)", exact), row("chunk", chunk),
                 row("chunk - exact", chunk - exact)],
                ["mode, predictions past the context", "mean loss (nats)", "± s.e.m. over stretches",
                 "perplexity (of the difference: the ratio)"])
    seen = history_lengths(length, C)[past]
    edges = np.linspace(max(1, C // 2), C + 1, 5).astype(int)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        where = (seen >= lo) & (seen < hi)
        if where.any():                                          # (a short stretch has gaps)
            rows.append([f"{lo}-{hi - 1}", f"{where.sum() * stretches}",
                         f"{chunk[:, where].mean():.4f}", f"{exact[:, where].mean():.4f}"])
    print(f"\nthe chunk mode by the tokens it saw (the exact mode saw {C} at the same predictions):")
    print_table(rows, ["tokens seen (chunk)", "predictions", "chunk loss", "exact loss"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA, help="tinyshakespeare.txt")
    parser.add_argument("--stretches", type=int, default=5)
    parser.add_argument("--length", type=int, default=2000, help="tokens per stretch")
    args = parser.parse_args(argv)
    if not os.path.exists(args.data):
        print(f"skipped: {args.data} not found (pass --data PATH to tinyshakespeare.txt)")
        return None
    model = npgpt.load("shakespeare-char")
    C = model.config.context_length
    ids = validation_ids(model, args.data)
    starts = np.linspace(0, len(ids) - args.length - 1, args.stretches).astype(int)
    exact, chunk = [], []
    for i, start in enumerate(starts):
        tokens = ids[start:start + args.length + 1]
        exact.append(teacher_forced_losses(model, tokens, "exact"))
        chunk.append(teacher_forced_losses(model, tokens, "chunk"))
        sys.stderr.write(f"stretch {i + 1}/{len(starts)}\n")
    exact, chunk = np.array(exact), np.array(chunk)             # (stretches, length)
    report(exact, chunk, C)
    return exact, chunk


if __name__ == "__main__":
    main()
