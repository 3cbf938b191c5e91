"""What ``context_overflow="slide"`` costs in validation loss, on a rotary-positions model.

    python benchmarks/slide_loss.py runs/llama            # a folder of `npgpt train --arch llama`

On text longer than the context, every token from position ``context_length`` on is
predicted three ways, over the same tokens:

- exact: from the last ``context_length`` tokens, recomputed (positions 0..T-1), as
  ``context_overflow="exact"`` and nanoGPT's loop see them;
- slide: generate's sliding KV cache (``context_overflow="slide"``): the cache keeps the last
  ``context_length - 1`` tokens, positions go on counting, and the deeper layers' cached keys
  and values were computed while older tokens were still in view;
- chunk: generate's chunks (``context_overflow="chunk"``), for comparison.

It prints the mean next-token cross-entropy (nats) of each and the differences. The text:
``--segments`` stretches of ``context_length + --length`` tokens, evenly spaced over the
validation split (the last 10% of tiny Shakespeare: the file ``train_shakespeare.py`` reads,
or --data), decoded as one batch.
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, HERE]

import npgpt                                              # noqa: E402
from npgpt._decoder import Decoder                        # noqa: E402
from npgpt.sampling import log_softmax                    # noqa: E402
from npgpt.train import split_corpus                      # noqa: E402
from train_shakespeare import DEFAULT_DATA                # noqa: E402


def exact_losses(model, segments, batch=64):
    """-log p of each segment's tokens from position C on, each predicted from the C tokens
    before it, recomputed: (R, N - C)."""
    C = model.config.context_length
    R, N = segments.shape
    windows = np.stack([segments[:, j - C:j] for j in range(C, N)], axis=1)   # (R, N - C, C)
    flat = windows.reshape(-1, C)
    targets = segments[:, C:].reshape(-1)
    out = np.empty(len(flat))
    for lo in range(0, len(flat), batch):
        logits = model(flat[lo:lo + batch], last_only=True).astype(np.float64)   # (b, V)
        out[lo:lo + batch] = -log_softmax(logits)[np.arange(len(logits)), targets[lo:lo + batch]]
    return out.reshape(R, N - C)


def decoded_losses(model, segments, overflow):
    """-log p of the same tokens, decoding the segments with generate's Decoder in mode
    ``overflow``: the first C tokens as the prompt, then each token fed in turn: (R, N - C)."""
    C = model.config.context_length
    R, N = segments.shape
    decoder = Decoder(model, segments[:, :C].copy(), None, max_new=N - C, pad=0, overflow=overflow)
    rows = np.arange(R)
    out = np.empty((R, N - C))
    logits = decoder.first()
    for j in range(C, N):
        out[:, j - C] = -log_softmax(logits.astype(np.float64))[rows, segments[:, j]]
        if j + 1 < N:
            decoder.append(segments[:, j])
            logits = decoder.step()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a rotary-positions model: a training folder or a file")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--segments", type=int, default=16, help="stretches of text, one batch")
    parser.add_argument("--length", type=int, default=512,
                        help="tokens predicted per stretch, after its first context_length")
    args = parser.parse_args(argv)
    model = npgpt.load(args.model)
    C = model.config.context_length
    if model.config.positions != "rope":
        sys.exit(f"{args.model}: config.positions={model.config.positions!r}; slide needs 'rope'")
    text = open(args.data, encoding="utf-8").read()
    _, val = split_corpus(np.array(model.tokenizer.encode(text), dtype=np.int64))
    N = C + args.length
    starts = np.linspace(0, len(val) - N, args.segments).astype(int)
    segments = np.stack([val[s:s + N] for s in starts])                  # (R, N)
    print(f"model: {args.model}, {model.config.num_layers} layers, context {C}, "
          f"{model.num_parameters():,} parameters")
    print(f"text: {args.segments} stretches of {N} validation tokens; "
          f"{args.segments * args.length:,} tokens scored (each at position >= {C})")
    results = {}
    for name, run in (("exact", lambda: exact_losses(model, segments)),
                      ("slide", lambda: decoded_losses(model, segments, "slide")),
                      ("chunk", lambda: decoded_losses(model, segments, "chunk"))):
        start = time.perf_counter()
        results[name] = run()
        print(f"{name:>5}: mean cross-entropy {results[name].mean():.4f} nats "
              f"({time.perf_counter() - start:.1f} s)")
    for name in ("slide", "chunk"):
        diff = results[name] - results["exact"]
        print(f"{name} - exact: {diff.mean():+.4f} nats (per-token differences: mean |d| "
              f"{np.abs(diff).mean():.4f}, max |d| {np.abs(diff).max():.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
