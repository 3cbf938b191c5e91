"""The ``npgpt`` command line (it prints; the library never does).

    npgpt generate ...     continue a prompt
    npgpt train ...        train a character-level model on a text file
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


# ----------------------------------------------------------------------------- generate
def _generate(args) -> int:
    from . import GPT, GPTConfig

    cfg = GPTConfig(vocab_size=65, context_length=256, d_model=128, num_heads=4, num_layers=4,
                    residual="seed")
    model = GPT(cfg, seed=args.seed, init="torch")
    ids = np.array(args.prompt_ids, dtype=np.int64)
    cache = model.new_cache(1)
    logits = model(ids[None, :], cache=cache, last_only=True)
    out = list(ids)
    for _ in range(args.max_new_tokens):
        token = int(np.argmax(logits[0]))
        out.append(token)
        logits = model(np.array([[token]]), cache=cache, last_only=True)
    print(" ".join(map(str, out)))
    return 0


# ----------------------------------------------------------------------------- train
def default_corpus() -> tuple[str, str]:
    """(name, text): English every Python install carries — the interpreter's own pydoc
    topic texts (``pydoc_data.topics``), several hundred kilobytes."""
    from pydoc_data.topics import topics

    return "pydoc_data.topics", "\n\n".join(topics[k] for k in sorted(topics))


def _read_data(path: str | None) -> tuple[str, str]:
    if path is None:
        return default_corpus()
    if not os.path.exists(path):
        raise CLIError(f"data file {path!r} does not exist")
    if os.path.isdir(path):
        raise CLIError(f"data file {path!r} is a folder, not a text file")
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            text = f.read()
        except UnicodeDecodeError as err:
            raise CLIError(f"data file {path!r} is not UTF-8 text: {err}") from None
    if not text:
        raise CLIError(f"data file {path!r} is empty")
    return path, text


class _Progress:
    """A live progress line on a terminal, plain log lines otherwise."""

    def __init__(self, total_steps: int, stream, log_interval: int):
        self.total = total_steps
        self.stream = stream
        self.live = stream.isatty()
        self.log_interval = log_interval
        self.rate = None
        self.last_len = 0

    def step(self, info: dict) -> None:
        sps = 1.0 / max(info["seconds"], 1e-9)
        self.rate = sps if self.rate is None else 0.9 * self.rate + 0.1 * sps
        eta = (self.total - info["step"]) / self.rate
        line = (f"step {info['step']:>6}/{self.total} | loss {info['loss']:.4f} | "
                f"lr {info['lr']:.2e} | {info['tokens_per_second']:,.0f} tok/s | ETA {_format_seconds(eta)}")
        if self.live:
            self.stream.write("\r" + line.ljust(self.last_len))
            self.last_len = len(line)
            self.stream.flush()
        elif info["step"] % self.log_interval == 0 or info["step"] == self.total:
            self.stream.write(line + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        if self.live and self.last_len:
            self.stream.write("\r" + " " * self.last_len + "\r")
            self.last_len = 0
        self.stream.write(text + "\n")
        self.stream.flush()


def _train(args) -> int:
    from . import GPT, GPTConfig
    from .train import TrainConfig, TrainState, load_checkpoint, split_corpus, train

    out_dir = args.out
    ckpt_path = os.path.join(out_dir, "ckpt.npz")
    name, text = _read_data(args.data)
    if args.resume:
        if not os.path.exists(ckpt_path):
            raise CLIError(f"--resume: no checkpoint at {ckpt_path!r}")
        state = load_checkpoint(ckpt_path)
        tokenizer = state.model.tokenizer
    else:
        from .tokenizers import CharTokenizer

        tokenizer = CharTokenizer.from_text(text)
        try:
            cfg = GPTConfig(vocab_size=tokenizer.vocab_size, context_length=args.context,
                            d_model=args.d_model, num_heads=args.heads, num_layers=args.layers,
                            dropout=args.dropout, gelu=args.gelu, residual=args.residual,
                            tie_embeddings=args.tie_embeddings)
            tc = TrainConfig(batch_size=args.batch_size, steps=args.steps, lr=args.lr,
                             min_lr=args.min_lr, warmup=args.warmup, weight_decay=args.weight_decay,
                             beta2=args.beta2, grad_clip=args.grad_clip,
                             eval_interval=args.eval_interval, eval_iters=args.eval_iters,
                             seed=args.seed)
        except ValueError as err:
            raise CLIError(str(err)) from None
        model = GPT(cfg, seed=args.seed)
        model.tokenizer = tokenizer
        state = TrainState.new(model, tc)
    try:
        ids = np.array(tokenizer.encode(text), dtype=np.int64)
    except ValueError as err:
        raise CLIError(f"cannot encode {name} with the checkpoint's tokenizer: {err}") from None
    train_data, val_data = split_corpus(ids, 0.1)
    context = state.model.config.context_length
    if min(len(train_data), len(val_data)) <= context:
        raise CLIError(f"{name} has {len(ids):,} tokens: too few for context {context} with a 90/10 split")

    tc = state.train_config
    err = sys.stderr
    cfg = state.model.config
    err.write(f"data: {name}, {len(ids):,} tokens ({len(train_data):,} train / {len(val_data):,} val), "
              f"vocabulary {cfg.vocab_size}\n")
    err.write(f"model: {cfg.num_layers} layers, {cfg.num_heads} heads, d_model {cfg.d_model}, "
              f"context {cfg.context_length}, {state.model.num_parameters():,} parameters\n")
    if args.resume:
        err.write(f"resuming from {ckpt_path} at step {state.step}\n")
    progress = _Progress(tc.steps, err, log_interval=max(1, min(100, tc.eval_interval)))

    def on_eval(record):
        mark = "  (best: saved)" if record["best"] else ""
        progress.message(f"step {record['step']}: train loss {record['train_loss']:.4f}, "
                         f"val loss {record['val_loss']:.4f}{mark}")

    start = time.perf_counter()
    try:
        train(state, train_data, val_data, out_dir=out_dir, on_step=progress.step, on_eval=on_eval)
    except KeyboardInterrupt:
        progress.message(f"interrupted at step {state.step}; saved {ckpt_path} "
                         f"(continue with --resume)")
        return 130
    elapsed = time.perf_counter() - start
    best = state.best_val
    print(f"best validation loss {best:.4f} after {state.step} steps in {_format_seconds(elapsed)}; "
          f"model: {os.path.join(out_dir, 'model.safetensors')} (npgpt.load), "
          f"training state: {ckpt_path}")
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npgpt", description="A GPT language model in NumPy.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="greedy continuation of token ids on a fresh model")
    gen.add_argument("--prompt-ids", type=int, nargs="+", default=[0, 1, 2])
    gen.add_argument("--max-new-tokens", type=int, default=20)
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(func=_generate)

    tr = sub.add_parser(
        "train", help="train a character-level model on a text file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a character-level GPT (defaults: nanoGPT's CPU 'baby GPT').",
        epilog="examples:\n"
               "  npgpt train                                   # on Python's own pydoc texts\n"
               "  npgpt train --data input.txt --out run1 --steps 2000\n"
               "  npgpt train --data input.txt --out run1 --resume   # continue a run\n"
               "then: npgpt.load('run1/model.safetensors')")
    tr.add_argument("--data", help="a UTF-8 text file (default: the pydoc_data topic texts)")
    tr.add_argument("--out", default="out", help="output folder (default: out)")
    tr.add_argument("--layers", type=int, default=4)
    tr.add_argument("--heads", type=int, default=4)
    tr.add_argument("--d-model", type=int, default=128)
    tr.add_argument("--context", type=int, default=64)
    tr.add_argument("--residual", choices=["pre_norm", "seed"], default="pre_norm")
    tr.add_argument("--gelu", choices=["exact", "tanh"], default="exact")
    tr.add_argument("--tie-embeddings", action="store_true")
    tr.add_argument("--dropout", type=float, default=0.0)
    tr.add_argument("--batch-size", type=int, default=12)
    tr.add_argument("--steps", type=int, default=2000)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--min-lr", type=float, default=1e-4)
    tr.add_argument("--warmup", type=int, default=100)
    tr.add_argument("--weight-decay", type=float, default=0.1)
    tr.add_argument("--beta2", type=float, default=0.99)
    tr.add_argument("--grad-clip", type=float, default=1.0)
    tr.add_argument("--eval-interval", type=int, default=250)
    tr.add_argument("--eval-iters", type=int, default=20)
    tr.add_argument("--seed", type=int, default=1337)
    tr.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.npz")
    tr.set_defaults(func=_train)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as err:
        parser.exit(2, f"npgpt {args.command}: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
