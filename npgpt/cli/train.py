"""``npgpt train``: train a character-level model on a text file (Python's own pydoc texts by
default), one run a folder, with a progress line, checks that come before any work (the
data, the sizes against the machine's memory, a folder that holds a run) and --resume."""

from __future__ import annotations

import os
import re
import sys
import time

import numpy as np

from ._output import threads_used
from ._parsing import NON_NEGATIVE_INT, POSITIVE_INT, CLIError, Command, arg, option_error


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


# The training flags: argparse leaves them None, so that a flag given can be told from its
# default (a resumed run refuses a flag that contradicts its checkpoint). Flag -> (the
# GPTConfig or TrainConfig field, the default).
_MODEL_FLAGS = {"layers": ("num_layers", 4), "heads": ("num_heads", 4), "d_model": ("d_model", 128),
                "context": ("context_length", 64), "residual": ("residual", "pre_norm"),
                "gelu": ("gelu", "exact"), "tie_embeddings": ("tie_embeddings", False),
                "dropout": ("dropout", 0.0), "kv_heads": ("num_kv_heads", None)}
_OPTIMISER_FLAGS = {"batch_size": ("batch_size", 12), "lr": ("lr", 1e-3), "min_lr": ("min_lr", 1e-4),
                    "warmup": ("warmup", 100), "weight_decay": ("weight_decay", 0.1),
                    "beta2": ("beta2", 0.99), "grad_clip": ("grad_clip", 1.0),
                    "eval_interval": ("eval_interval", 250), "eval_iters": ("eval_iters", 20),
                    "seed": ("seed", 1337)}
_DEFAULT_STEPS = 2000


def _default(flag: str) -> str:
    """The --help note of a training flag, such as "(default 4)"."""
    value = {**_MODEL_FLAGS, **_OPTIMISER_FLAGS}[flag][1]
    return f"(default {'off' if value is False else value})"


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
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise CLIError(f"data file {path!r} is not UTF-8 text: {err}") from None
    except OSError as err:
        raise CLIError(f"data file {path!r} cannot be read: {err.strerror or err}") from None
    if not text:
        raise CLIError(f"data file {path!r} is empty")
    return path, text


class _Progress:
    """A live progress line on a terminal, plain log lines otherwise. The ``header`` lines
    are written with the first step or message, once the run has really begun."""

    def __init__(self, total_steps: int, stream, log_interval: int, header=()):
        self.total = total_steps
        self.stream = stream
        self.live = stream.isatty()
        self.log_interval = log_interval
        self.header = list(header)
        self.rate = None
        self.last_len = 0

    def step(self, info: dict) -> None:
        self._write_header()
        sps = 1.0 / max(info["seconds"], 1e-9)
        self.rate = sps if self.rate is None else 0.9 * self.rate + 0.1 * sps
        eta = (self.total - info["step"]) / self.rate
        line = (f"step {info['step']:>6}/{self.total} | loss {info['loss']:.4f} | "
                f"lr {info['lr']:.2e} | {info['tokens_per_second']:,.0f} tok/s | {threads_used()} | "
                f"ETA {_format_seconds(eta)}")
        if self.live:
            self.stream.write("\r" + line.ljust(self.last_len))
            self.last_len = len(line)
            self.stream.flush()
        elif info["step"] % self.log_interval == 0 or info["step"] == self.total:
            self.stream.write(line + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        self._write_header()
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Rub out the live line (before a message or an error)."""
        if self.live and self.last_len:
            self.stream.write("\r" + " " * self.last_len + "\r")
            self.stream.flush()
            self.last_len = 0

    def _write_header(self) -> None:
        for line in self.header:
            self.stream.write(line + "\n")
        self.header = []


def _train_option_error(err: Exception) -> CLIError:
    """A GPTConfig / TrainConfig error worded with the training flags."""
    message = str(err)
    for flag, (field, _) in _MODEL_FLAGS.items():
        if field != flag and "_" in flag:          # num_kv_heads -> kv_heads: option_error's --kv-heads
            message = re.sub(rf"\b{field}\b", flag, message)
        elif field != flag:                        # context_length -> --context, ...
            message = re.sub(rf"\b{field}=(?=\S)", f"--{flag} ", message)
            message = re.sub(rf"\b{field}\b", f"--{flag}", message)
    return option_error(ValueError(message), COMMAND.arguments)


def _physical_memory():
    """The machine's memory in bytes, or None where the system does not say."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return total if total > 0 else None


def _check_memory(cfg, batch_size: int) -> None:
    """Refuse, naming the flag to lower, sizes whose training would not fit in the machine's
    memory (before anything is allocated)."""
    from ..train import training_memory

    limit = _physical_memory()
    need = training_memory(cfg, batch_size)
    if limit is None or need <= limit:
        return
    sizes = {"batch_size": batch_size, **{f: getattr(cfg, _MODEL_FLAGS[f][0])
                                          for f in ("context", "d_model", "layers", "heads")}}
    relief = {}
    for flag, value in sizes.items():             # what each size back at its default would need
        default = {**_MODEL_FLAGS, **_OPTIMISER_FLAGS}[flag][1]
        if value > default:
            try:
                smaller = cfg if flag == "batch_size" else cfg.replace(**{_MODEL_FLAGS[flag][0]: default})
            except ValueError:                    # e.g. --heads that do not divide the default width
                continue
            relief[flag] = training_memory(smaller, default if flag == "batch_size" else batch_size)
    gib = f"about {need / 2**30:,.0f} GiB of memory, more than this machine's {limit / 2**30:,.1f} GiB"
    if not relief:
        raise CLIError(f"training this model would need {gib}")
    flag = min(relief, key=relief.get)
    raise CLIError(f"--{flag.replace('_', '-')} {sizes[flag]}: training would need {gib}; lower it")


def _given(args, flags: dict) -> dict:
    """{field: the flag's value, or its default} for a table of flags."""
    return {field: default if getattr(args, flag) is None else getattr(args, flag)
            for flag, (field, default) in flags.items()}


def _new_state(args, text: str):
    from .. import GPT, GPTConfig
    from ..tokenizers import CharTokenizer
    from ..train import TrainConfig, TrainState, model_config

    tokenizer = CharTokenizer.from_text(text)
    steps = _DEFAULT_STEPS if args.steps is None else args.steps
    arch = args.arch or "gpt"
    if arch != "llama":
        for flag in ("kv_heads",):                # the Llama-only flags
            if getattr(args, flag) is not None:
                raise CLIError(f"--{flag.replace('_', '-')} needs --arch llama")
    fields = _given(args, _MODEL_FLAGS)
    kv_heads = fields.pop("num_kv_heads")
    if arch == "llama":                           # GPT-only flags, refused by name
        for flag, value in (("dropout", fields["dropout"] > 0 and fields["dropout"]),
                            ("gelu", args.gelu), ("residual", fields["residual"] != "pre_norm"
                                                  and fields["residual"])):
            if value:
                what = {"dropout": "dropout", "gelu": "GELU (its MLP is SwiGLU)",
                        "residual": "other residual layout (it is pre-norm)"}[flag]
                raise CLIError(f"--{flag} {value} is a GPT setting: the Llama-style block "
                               f"(--arch llama) has no {what}")
    try:
        cfg = model_config(arch, GPTConfig(vocab_size=tokenizer.vocab_size, **fields),
                           num_kv_heads=kv_heads)
        tc = TrainConfig(steps=steps, **_given(args, _OPTIMISER_FLAGS))
    except ValueError as err:
        raise _train_option_error(err) from None
    _check_memory(cfg, tc.batch_size)
    model = GPT(cfg, seed=tc.seed)
    model.tokenizer = tokenizer
    return TrainState.new(model, tc)


def _resumed_state(args, ckpt_path: str):
    import dataclasses

    from ..train import architecture, load_checkpoint

    if not os.path.exists(ckpt_path):
        raise CLIError(f"--resume: no checkpoint at {ckpt_path!r}")
    try:
        state = load_checkpoint(ckpt_path)
    except ValueError as err:
        raise CLIError(f"--resume: {err}") from None
    saved_arch = architecture(state.model.config)
    if args.arch is not None and args.arch != saved_arch:
        raise CLIError(f"--resume: --arch {args.arch} contradicts the checkpoint's {saved_arch} "
                       f"(a resumed run keeps its settings; only --steps may change)")
    for flags, config in ((_MODEL_FLAGS, state.model.config), (_OPTIMISER_FLAGS, state.train_config)):
        for flag, (field, _) in flags.items():
            given, saved = getattr(args, flag), getattr(config, field)
            if given is not None and given != saved:
                raise CLIError(f"--resume: --{flag.replace('_', '-')} {given} contradicts the checkpoint's "
                               f"{saved} (a resumed run keeps its settings; only --steps may change)")
    if args.steps is not None:            # the one setting a resumed run may change
        if args.steps < state.step:
            raise CLIError(f"--resume: --steps {args.steps} is fewer than the {state.step} steps "
                           f"the checkpoint has done")
        try:
            state.train_config = dataclasses.replace(state.train_config, steps=args.steps)
        except ValueError as err:
            raise _train_option_error(err) from None
    if state.model.tokenizer is None:
        raise CLIError(f"--resume: {ckpt_path} carries no tokenizer, so the data cannot be encoded")
    return state


def _split_data(state, name: str, text: str):
    from ..train import split_corpus

    try:
        ids = np.array(state.model.tokenizer.encode(text), dtype=np.int64)
    except ValueError as err:
        raise CLIError(f"cannot encode {name} with the checkpoint's tokenizer: {err}") from None
    train_data, val_data = split_corpus(ids, 0.1)
    context = state.model.config.context_length
    if min(len(train_data), len(val_data)) <= context:
        raise CLIError(f"{name} has {len(ids):,} tokens: too few for --context {context} with a 90/10 split")
    return ids, train_data, val_data


def _describe_model(cfg) -> str:
    """The architecture in a few words: "GPT" or "Llama-style (RMSNorm, rotary, SwiGLU F 352)"."""
    from ..train import architecture

    if architecture(cfg) == "gpt":
        return "GPT"
    kv = f", {cfg.kv_heads} key/value heads" if cfg.kv_heads != cfg.num_heads else ""
    return f"Llama-style (RMSNorm, rotary positions, SwiGLU width {cfg.ffn_size}{kv})"


def _gpt_count(cfg) -> str:
    """For a Llama-style config, the parameter count of the GPT of the same sizes."""
    from ..train import architecture, num_parameters

    if architecture(cfg) == "gpt":
        return ""
    gpt = cfg.replace(norm="layernorm", positions="learned", mlp="gelu", output_bias=True,
                      num_kv_heads=None, ffn_dim=None)
    return f" (the GPT of these sizes: {num_parameters(gpt):,})"


def _interrupted(err, ckpt_path: str) -> str:
    """What an interrupted run says it left behind."""
    if err.step is None:
        kept = (f"{ckpt_path} keeps the last saved state (continue with --resume)"
                if os.path.exists(ckpt_path) else "nothing had been saved yet")
        return f"interrupted in the middle of an update, whose half-done state is not saved; {kept}"
    text = f"interrupted at step {err.step}; saved {', '.join(err.saved)} (continue with --resume)"
    if any(path.endswith("model.safetensors") for path in err.saved):
        text += "; the model is the latest state, not yet evaluated"
    return text


def _check_out(args, out_dir: str) -> None:
    """A new run never replaces another: an --out folder that holds one (train.run_in_folder)
    needs --resume or --overwrite, and not both."""
    from ..train import run_in_folder

    if args.resume and args.overwrite:
        raise CLIError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    found = None if args.resume or args.overwrite else run_in_folder(out_dir)
    if found:
        raise CLIError(f"--out {out_dir!r} already holds {found}: continue it with --resume, replace "
                       f"its files with --overwrite (other files are kept), or choose another --out")


def _train(args) -> int:
    from ..train import TrainingError, TrainingInterrupted, train

    out_dir = args.out
    ckpt_path = os.path.join(out_dir, "ckpt.npz")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CLIError(f"--out {out_dir!r} is a file, not a folder")
    _check_out(args, out_dir)
    name, text = _read_data(args.data)
    state = _resumed_state(args, ckpt_path) if args.resume else _new_state(args, text)
    ids, train_data, val_data = _split_data(state, name, text)
    tc, cfg = state.train_config, state.model.config
    header = [f"data: {name}, {len(ids):,} tokens ({len(train_data):,} train / {len(val_data):,} val), "
              f"vocabulary {cfg.vocab_size}",
              f"model: {_describe_model(cfg)}, {cfg.num_layers} layers, {cfg.num_heads} heads, "
              f"d_model {cfg.d_model}, context {cfg.context_length}, "
              f"{state.model.num_parameters():,} parameters{_gpt_count(cfg)}"]
    if args.resume:
        header.append(f"resuming from {ckpt_path} at step {state.step}")
    if tc.steps <= tc.warmup:
        header.append(f"warning: --steps {tc.steps} <= --warmup {tc.warmup}: the run never leaves its "
                      f"warm-up, so the learning rate never reaches --lr {tc.lr:g}; lower --warmup")
    progress = _Progress(tc.steps, sys.stderr, max(1, min(100, tc.eval_interval)), header)

    def on_eval(record):
        mark = "  (best: saved)" if record["best"] else ""
        progress.message(f"step {record['step']}: train loss {record['train_loss']:.4f}, "
                         f"val loss {record['val_loss']:.4f}{mark}")

    start = time.perf_counter()
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # a divergence: one line
            train(state, train_data, val_data, out_dir=out_dir, on_step=progress.step, on_eval=on_eval,
                  overwrite=args.overwrite)
    except TrainingInterrupted as err:
        progress.message(_interrupted(err, ckpt_path))
        return 130
    except KeyboardInterrupt:             # a further Ctrl-C while saving: every save is atomic
        progress.message("interrupted while saving; the files of the last complete save are kept")
        return 130
    except TrainingError as err:
        progress.clear()
        raise CLIError(str(err)) from None
    except MemoryError:
        progress.clear()
        raise CLIError("out of memory while training; lower --batch-size, --context, --d-model "
                       "or --layers") from None
    elapsed = time.perf_counter() - start
    best = "none yet" if state.best_val is None else f"{state.best_val:.4f}"
    print(f"best validation loss {best} after {state.step} steps in {_format_seconds(elapsed)} "
          f"on {threads_used()}; "
          f"model: {os.path.join(out_dir, 'model.safetensors')} (npgpt.load), "
          f"training state: {ckpt_path}")
    return 0


COMMAND = Command(
    name="train", help="train a character-level model on a text file",
    description="Train a character-level GPT (defaults: nanoGPT's CPU 'baby GPT') or a "
                "Llama-style model of the same parameter count (--arch llama).",
    examples=("npgpt train                                   # on Python's own pydoc texts",
              "npgpt train --data input.txt --out run1 --steps 2000",
              "npgpt train --data input.txt --out run2 --arch llama   # RMSNorm, rotary, SwiGLU",
              "npgpt train --data input.txt --out run1 --resume   # continue a run",
              "npgpt train --data input.txt --out run1 --overwrite   # a new run in its place"),
    footer="then: npgpt.load('run1/model.safetensors')",
    arguments=(
        arg("--data", help="a UTF-8 text file (default: the pydoc_data topic texts)"),
        arg("--out", default="out", help="output folder (default: out); one run at a time; "
            "one that holds a run needs --resume or --overwrite"),
        arg("--arch", choices=["gpt", "llama"],
            help="gpt: GPT-2's block; llama: RMSNorm, rotary positions, SwiGLU (its width "
                 "chosen for the GPT's parameter count), no output bias (default: gpt)"),
        arg("--kv-heads", type=POSITIVE_INT,
            help="--arch llama: key/value heads of grouped-query attention, dividing "
                 "--heads (default: as many as --heads)"),
        arg("--layers", type=POSITIVE_INT, help=f"transformer blocks {_default('layers')}"),
        arg("--heads", type=POSITIVE_INT, help=f"attention heads {_default('heads')}"),
        arg("--d-model", type=POSITIVE_INT, help=f"width of the token vectors {_default('d_model')}"),
        arg("--context", type=POSITIVE_INT, help=f"tokens of context {_default('context')}"),
        arg("--residual", choices=["pre_norm", "seed"],
            help=f"pre_norm: GPT-2's blocks; seed: the tutorial's {_default('residual')}"),
        arg("--gelu", choices=["exact", "tanh"], help=f"tanh: GPT-2's approximation {_default('gelu')}"),
        arg("--tie-embeddings", action="store_true", default=None,
            help=f"the output layer reuses the token table {_default('tie_embeddings')}"),
        arg("--dropout", type=float, help=f"dropout probability while training {_default('dropout')}"),
        arg("--batch-size", type=POSITIVE_INT, help=f"windows a step {_default('batch_size')}"),
        arg("--steps", type=POSITIVE_INT,
            help=f"optimiser steps in all (default {_DEFAULT_STEPS}; with --resume: a new total)"),
        arg("--lr", type=float, help=f"peak learning rate {_default('lr')}"),
        arg("--min-lr", type=float, help=f"final learning rate {_default('min_lr')}"),
        arg("--warmup", type=NON_NEGATIVE_INT,
            help=f"steps of linear warm-up {_default('warmup')}; a run of no more --steps "
                 f"never leaves it: a warning says so"),
        arg("--weight-decay", type=float, help=f"AdamW's decay of the weight matrices {_default('weight_decay')}"),
        arg("--beta2", type=float, help=f"AdamW's second-moment decay {_default('beta2')}"),
        arg("--grad-clip", type=float, help=f"largest gradient norm, 0: no clipping {_default('grad_clip')}"),
        arg("--eval-interval", type=POSITIVE_INT, help=f"steps between evaluations {_default('eval_interval')}"),
        arg("--eval-iters", type=POSITIVE_INT, help=f"batches an evaluation {_default('eval_iters')}"),
        arg("--seed", type=NON_NEGATIVE_INT, help=f"seed of the weights, batches and dropout {_default('seed')}"),
        arg("--resume", action="store_true",
            help="continue from OUT/ckpt.npz with its settings: only --steps may change, "
                 "other flags must match it"),
        arg("--overwrite", action="store_true",
            help="start a new run in an --out folder that holds one, replacing its "
                 "ckpt.npz and model.safetensors as the new run saves (other files are "
                 "kept); without it such a folder is refused")),
    handler=_train)
