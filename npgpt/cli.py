"""The ``npgpt`` command line (it prints; the library never does).

    npgpt generate ...     continue a prompt (the bundled Shakespeare model by default)
    npgpt inspect ...      the next-token distribution and what each strategy keeps
    npgpt plot ...         the seed's embedding heatmaps, attention maps
    npgpt train ...        train a character-level model on a text file
    npgpt bench            time npgpt on this machine

Every command answers --help with examples. User errors print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, NamedTuple

import numpy as np


class CLIError(Exception):
    """A user error: printed as one line, exit code 2.

    Examples
    --------
    >>> _read_data("missing.txt")
    Traceback (most recent call last):
        ...
    npgpt.cli.CLIError: data file 'missing.txt' does not exist

    ``npgpt train --data missing.txt`` prints it as
    ``npgpt train: error: data file 'missing.txt' does not exist`` and exits with 2.
    """


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (and exit code 2), not usage plus a line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


# ----------------------------------------------------------------------------- models
DEFAULT_MODEL = "shakespeare-char"


def _load_model(name_or_path: str):
    from .io import CheckpointError, load

    try:
        model = load(name_or_path)
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        raise CLIError(str(err).splitlines()[0]) from None
    if model.tokenizer is None:
        raise CLIError(f"model {name_or_path!r} carries no tokenizer, so text cannot be encoded")
    return model


def _encode(model, text: str):
    try:
        ids = model.tokenizer.encode(text)
    except ValueError as err:
        raise CLIError(f"cannot encode the prompt: {err}") from None
    if len(ids) == 0:
        raise CLIError("the prompt encodes to no tokens; give a non-empty --prompt")
    return np.array(ids, dtype=np.int64)


# ----------------------------------------------------------------------------- generate
_SAMPLING_ONLY = ("temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")


def _decoding_options(args) -> dict:
    """generate() keyword arguments from the command line, refusing combinations that would
    silently do nothing."""
    given = {name: getattr(args, name) for name in _SAMPLING_ONLY if getattr(args, name) is not None}
    if given and not args.do_sample:
        flag = "--" + next(iter(given)).replace("_", "-")
        raise CLIError(f"{flag} only changes sampling; add --do-sample (greedy and beam search ignore it)")
    if args.num_return_sequences > 1 and not args.do_sample and args.num_beams < args.num_return_sequences:
        raise CLIError("--num-return-sequences > 1 needs --do-sample, or --num-beams at least as large")
    early = {"true": True, "false": False, "never": "never"}[args.early_stopping]
    options = dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, seed=args.seed,
                   repetition_penalty=args.repetition_penalty, presence_penalty=args.presence_penalty,
                   frequency_penalty=args.frequency_penalty, no_repeat_ngram_size=args.no_repeat_ngram_size,
                   num_beams=args.num_beams, length_penalty=args.length_penalty, early_stopping=early,
                   num_return_sequences=args.num_return_sequences, min_new_tokens=args.min_new_tokens,
                   eos_token_id=args.eos_token_id)
    options.update(given)
    return options


def _generate(args) -> int:
    from .generate import generate, stream

    model = _load_model(args.model)
    prompt = _encode(model, args.prompt)
    options = _decoding_options(args)
    tok = model.tokenizer
    out = sys.stdout
    try:
        if options["num_beams"] == 1 and options["num_return_sequences"] == 1:
            # stream: print each token as it comes (decode the whole text, print what is new,
            # so that multi-byte characters split across tokens come out whole)
            out.write(args.prompt)
            out.flush()
            new, shown = [], ""
            for tokens in stream(model, prompt, **options):
                new.append(int(tokens[0]))
                text = tok.decode(new)
                if text.endswith("\ufffd"):
                    continue                      # an incomplete character: wait for the rest
                out.write(text[len(shown):])
                out.flush()
                shown = text
            out.write(tok.decode(new)[len(shown):] + "\n")
            return 0
        result = generate(model, prompt, **options)
    except ValueError as err:
        raise CLIError(str(err)) from None
    n_prompt = len(prompt)
    if options["num_beams"] > 1:
        out.write(f"beam search, {options['num_beams']} beams: the candidates, best first "
                  f"(score = sum log p / new_tokens ** {options['length_penalty']})\n")
        for rank, (seq, score) in enumerate(zip(result.beam_sequences[0], result.beam_scores[0])):
            out.write(f"--- candidate {rank + 1}  score {score:.4f}\n")
            out.write(args.prompt + tok.decode(seq[n_prompt:].tolist()) + "\n")
        return 0
    for i, (seq, score) in enumerate(zip(result.sequences, result.scores)):
        n_new = int(result.num_new_tokens[i])
        out.write(f"--- sample {i + 1}  log p = {score:.2f} over {n_new} tokens\n")
        out.write(args.prompt + tok.decode(seq[n_prompt:n_prompt + n_new].tolist()) + "\n")
    return 0


# ----------------------------------------------------------------------------- inspect
def _inspect(args) -> int:
    from . import viz

    model = _load_model(args.model)
    ids = _encode(model, args.prompt)
    window = ids[-model.config.context_length:]
    logits = model(window, last_only=True)
    try:
        report = viz.strategy_report(logits, seed=args.seed, temperature=args.temperature,
                                     top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                                     typical_p=args.typical_p)
    except ValueError as err:
        raise CLIError(str(err)) from None
    print(f"next token after {args.prompt!r} ({len(ids)} tokens):")
    print(viz.inspect_text(report, labels=model.tokenizer, top=args.top))
    if args.png:
        try:
            viz.plot_strategies(report, labels=model.tokenizer, path=args.png)
        except ImportError as err:
            raise CLIError(str(err)) from None
        print(f"wrote {args.png}")
    return 0


# ----------------------------------------------------------------------------- plot
def _plot(args) -> int:
    from . import viz

    model = _load_model(args.model)
    if args.what == "attention" and args.prompt is None:
        raise CLIError("plot attention needs --prompt TEXT")
    text = args.prompt if args.prompt is not None else "ROMEO:\nBut soft, what light"
    try:
        ids = _encode(model, text)[: model.config.context_length]
    except CLIError:
        if args.prompt is not None:
            raise
        ids = np.arange(min(20, model.config.vocab_size, model.config.context_length))
    try:
        if args.what == "embeddings":
            viz.plot_embeddings(model, ids, path=args.png, labels=model.tokenizer)
        else:
            viz.plot_attention(model, ids, labels=model.tokenizer, path=args.png)
    except ImportError as err:
        raise CLIError(str(err)) from None
    print(f"wrote {args.png}")
    return 0


# ----------------------------------------------------------------------------- bench
def _bench(args) -> int:
    from .bench import format_table, run

    def progress(name):
        sys.stderr.write(f"running: {name}\n")
        sys.stderr.flush()

    rows = run(repeats=args.repeats, progress=progress)
    print(format_table(rows))
    print("(npgpt alone; the comparisons against PyTorch, transformers and tiktoken are the "
          "scripts in the repository's benchmarks/ folder)")
    return 0


# ----------------------------------------------------------------------------- train
def default_corpus() -> tuple[str, str]:
    """(name, text): English every Python install carries — the interpreter's own pydoc
    topic texts (``pydoc_data.topics``), several hundred kilobytes.

    Examples
    --------
    >>> name, text = default_corpus()
    >>> name, len(text) > 100_000
    ('pydoc_data.topics', True)
    """
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
        if args.steps is not None:          # the one setting a resumed run may change
            import dataclasses

            try:
                state.train_config = dataclasses.replace(state.train_config, steps=args.steps)
            except ValueError as err:
                raise CLIError(str(err)) from None
    else:
        from .tokenizers import CharTokenizer

        tokenizer = CharTokenizer.from_text(text)
        try:
            cfg = GPTConfig(vocab_size=tokenizer.vocab_size, context_length=args.context,
                            d_model=args.d_model, num_heads=args.heads, num_layers=args.layers,
                            dropout=args.dropout, gelu=args.gelu, residual=args.residual,
                            tie_embeddings=args.tie_embeddings)
            tc = TrainConfig(batch_size=args.batch_size, steps=args.steps or 2000, lr=args.lr,
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
# Every sub-command is a row of _COMMANDS: its name, its one-line help (the command list of
# ``npgpt --help``), its description and examples (``npgpt NAME --help``), its arguments
# (exactly what argparse's add_argument takes) and the function that runs it.
class _Command(NamedTuple):
    name: str
    help: str
    description: str
    examples: tuple           # command lines shown under "examples:" in --help
    arguments: tuple          # (flags, add_argument keyword arguments) pairs, in --help order
    handler: Callable[[argparse.Namespace], int]
    footer: str = ""          # a last line of the --help epilog, after the examples


def _arg(*flags, **options):
    """One argument of a command: ``_arg("--top-k", type=int)`` ~ ``add_argument("--top-k", type=int)``."""
    return flags, options


def _epilog(examples, footer=""):
    """The end of a --help: "examples:", the command lines indented, then ``footer``."""
    lines = ["examples:"] + ["  " + example for example in examples]
    if footer:
        lines.append(footer)
    return "\n".join(lines)


_MODEL_ARG = _arg("--model", default=DEFAULT_MODEL,
                  help=f"a bundled model's name or a checkpoint path (default: {DEFAULT_MODEL})")

_COMMANDS = (
    _Command(
        name="generate", help="continue a prompt (streams as it goes)",
        description="Continue a prompt with greedy decoding, sampling or beam search.",
        examples=("npgpt generate --prompt 'ROMEO:' --max-new-tokens 200 --do-sample --temperature 0.8 --top-p 0.9",
                  "npgpt generate --prompt 'JULIET:' --do-sample --min-p 0.1 --seed 3 --num-return-sequences 3",
                  "npgpt generate --prompt 'To be' --num-beams 4 --max-new-tokens 30",
                  "npgpt generate --model out/model.safetensors --prompt 'Hello'"),
        arguments=(
            _MODEL_ARG,
            _arg("--prompt", default="\n", help="the text to continue (default: a newline)"),
            _arg("--max-new-tokens", type=int, default=200),
            _arg("--min-new-tokens", type=int, default=0),
            _arg("--do-sample", action="store_true", help="sample instead of greedy decoding"),
            _arg("--temperature", type=float),
            _arg("--top-k", type=int),
            _arg("--top-p", type=float),
            _arg("--min-p", type=float),
            _arg("--typical-p", type=float),
            _arg("--epsilon-cutoff", type=float),
            _arg("--eta-cutoff", type=float),
            _arg("--repetition-penalty", type=float, default=1.0),
            _arg("--presence-penalty", type=float, default=0.0),
            _arg("--frequency-penalty", type=float, default=0.0),
            _arg("--no-repeat-ngram-size", type=int, default=0),
            _arg("--num-beams", type=int, default=1),
            _arg("--length-penalty", type=float, default=1.0),
            _arg("--early-stopping", choices=["true", "false", "never"], default="false"),
            _arg("--num-return-sequences", type=int, default=1),
            _arg("--eos-token-id", type=int, nargs="+"),
            _arg("--seed", type=int, default=None)),
        handler=_generate),
    _Command(
        name="inspect", help="the next-token distribution and what each strategy does with it",
        description="For the next token: the model's distribution, what greedy, temperature, "
                    "top-k, top-p, min-p and typical sampling keep, and what each would choose.",
        examples=("npgpt inspect --prompt 'ROMEO: I'",
                  "npgpt inspect --prompt 'To be or not to b' --top-k 3 --top-p 0.5 --png strategies.png"),
        arguments=(
            _MODEL_ARG,
            _arg("--prompt", required=True),
            _arg("--temperature", type=float, default=0.8),
            _arg("--top-k", type=int, default=5),
            _arg("--top-p", type=float, default=0.9),
            _arg("--min-p", type=float, default=0.1),
            _arg("--typical-p", type=float, default=0.9),
            _arg("--seed", type=int, default=0),
            _arg("--top", type=int, default=10, help="rows in the chart (default 10)"),
            _arg("--png", help="also write the seed's heatmaps, one row per strategy")),
        handler=_inspect),
    _Command(
        name="plot", help="the seed's pictures: embeddings or attention maps",
        description="Draw the seed tutorial's embedding heatmaps, or the attention maps of "
                    "every layer and head (needs the plot extra: pip install \"npgpt[plot]\").",
        examples=("npgpt plot embeddings --png embeddings.png",
                  "npgpt plot attention --prompt 'ROMEO: But soft' --png attention.png"),
        arguments=(
            _arg("what", choices=["embeddings", "attention"]),
            _arg("--png", required=True),
            _arg("--prompt"),
            _MODEL_ARG),
        handler=_plot),
    _Command(
        name="bench", help="time npgpt on this machine (NumPy only)",
        description="Run the benchmarks that need no optional package and print a table.",
        examples=("npgpt bench", "npgpt bench --repeats 9"),
        arguments=(_arg("--repeats", type=int, default=5),),
        handler=_bench),
    _Command(
        name="train", help="train a character-level model on a text file",
        description="Train a character-level GPT (defaults: nanoGPT's CPU 'baby GPT').",
        examples=("npgpt train                                   # on Python's own pydoc texts",
                  "npgpt train --data input.txt --out run1 --steps 2000",
                  "npgpt train --data input.txt --out run1 --resume   # continue a run"),
        footer="then: npgpt.load('run1/model.safetensors')",
        arguments=(
            _arg("--data", help="a UTF-8 text file (default: the pydoc_data topic texts)"),
            _arg("--out", default="out", help="output folder (default: out)"),
            _arg("--layers", type=int, default=4),
            _arg("--heads", type=int, default=4),
            _arg("--d-model", type=int, default=128),
            _arg("--context", type=int, default=64),
            _arg("--residual", choices=["pre_norm", "seed"], default="pre_norm"),
            _arg("--gelu", choices=["exact", "tanh"], default="exact"),
            _arg("--tie-embeddings", action="store_true"),
            _arg("--dropout", type=float, default=0.0),
            _arg("--batch-size", type=int, default=12),
            _arg("--steps", type=int, default=None,
                 help="optimiser steps in all (default 2000; with --resume: a new total)"),
            _arg("--lr", type=float, default=1e-3),
            _arg("--min-lr", type=float, default=1e-4),
            _arg("--warmup", type=int, default=100),
            _arg("--weight-decay", type=float, default=0.1),
            _arg("--beta2", type=float, default=0.99),
            _arg("--grad-clip", type=float, default=1.0),
            _arg("--eval-interval", type=int, default=250),
            _arg("--eval-iters", type=int, default=20),
            _arg("--seed", type=int, default=1337),
            _arg("--resume", action="store_true",
                 help="continue from OUT/ckpt.npz (its settings; only --steps may change)")),
        handler=_train),
)

_EXAMPLES = ("npgpt generate --prompt 'ROMEO:' --do-sample --temperature 0.8 --top-p 0.9",
             "npgpt inspect --prompt 'ROMEO: I'",
             "npgpt train --data input.txt --out run1",
             "npgpt bench")


def build_parser() -> argparse.ArgumentParser:
    """The ``npgpt`` argument parser: one sub-command per row of ``_COMMANDS``.

    Parsing fills in every default, and ``args.func`` is the function that runs the command.

    Examples
    --------
    >>> args = build_parser().parse_args(["generate", "--prompt", "hi", "--top-k", "5"])
    >>> args.command, args.prompt, args.top_k, args.max_new_tokens, args.do_sample
    ('generate', 'hi', 5, 200, False)
    """
    parser = _Parser(prog="npgpt", formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="A GPT language model and every common decoding strategy, in NumPy.",
                     epilog=_epilog(_EXAMPLES, "run 'npgpt COMMAND --help' for each command's options"))
    sub = parser.add_subparsers(dest="command", required=True)
    for command in _COMMANDS:
        command_parser = sub.add_parser(command.name, help=command.help, description=command.description,
                                        epilog=_epilog(command.examples, command.footer),
                                        formatter_class=argparse.RawDescriptionHelpFormatter)
        for flags, options in command.arguments:
            command_parser.add_argument(*flags, **options)
        command_parser.set_defaults(func=command.handler)
    return parser


def main(argv=None) -> int:
    """Run ``npgpt ARGV...`` (default: the process's arguments) and return the exit code.

    The command prints its results; a user error prints one line to stderr and exits with
    2 (``SystemExit``), Ctrl-C returns 130.

    Examples
    --------
    Greedy decoding with the bundled Shakespeare model, streamed as it goes:

    >>> main(["generate", "--prompt", "ROMEO:", "--max-new-tokens", "40"])
    ROMEO:
    I will not so soon to the seat of the s
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as err:
        parser.exit(2, f"npgpt {args.command}: error: {err}\n")
    except KeyboardInterrupt:                 # Ctrl-C in generate / inspect / bench: no traceback
        sys.stderr.write("\ninterrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
