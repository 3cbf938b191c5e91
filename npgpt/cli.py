"""The ``npgpt`` command line (it prints; the library never does).

    npgpt generate ...     continue a prompt (the bundled Shakespeare model by default)
    npgpt inspect ...      the next-token distribution and what each strategy keeps
    npgpt plot ...         the seed's embedding heatmaps, attention maps
    npgpt train ...        train a character-level model on a text file
    npgpt bench            time npgpt on this machine
    npgpt convert IN OUT   write a model as safetensors, a Hugging Face folder or GGUF

Every command answers --help with examples. User errors print one line and exit with 2,
before anything else is printed; Ctrl-C exits with 130, and a closed pipe
(``npgpt generate | head``) ends the command quietly, as it ends ``cat``. Besides its text,
generate writes on stderr the seed it picked (sampling without --seed), a counter or the best
running beam on a terminal, and a last line with its timing (:class:`_Notes`).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import inspect
import os
import re
import select
import shutil
import stat
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
    """argparse, but a bad option is one line (and exit code 2), not usage plus a line; it
    names the sub-command it belongs to, and suggests the closest option, command or choice."""

    commands: dict = {}       # the top-level parser's sub-command parsers, by name (build_parser)

    def error(self, message):
        message = re.sub(r"\bargument -\w/--", "argument --", message)   # -n/--max-new-tokens: the long name
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        # argparse leaves a sub-command's unknown options to the top-level parser, which
        # would blame (and point at the help of) ``npgpt``: report them for the sub-command
        args, unknown = self.parse_known_args(args, namespace)
        if unknown:
            parser = self.commands.get(getattr(args, "command", None), self)
            flags = getattr(parser, "_option_string_actions", {})
            parser.error(f"unrecognized arguments: {' '.join(unknown)}{_did_you_mean(unknown, flags)}")
        return args

    def _check_value(self, action, value):
        # argparse's check of ``choices`` (a sub-command's name, --early-stopping, ...):
        # add the closest choice to its error
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as err:
            hint = _did_you_mean([value], [str(c) for c in action.choices or ()], options_only=False)
            raise argparse.ArgumentError(action, f"{err.message}{hint}") from None


def _did_you_mean(words, candidates, options_only=True) -> str:
    """``"; did you mean --top-p?"``: the closest candidate of each misspelled word ('' if none).

    >>> _did_you_mean(["--topp", "0.9"], ["--top-p", "--top-k", "--seed"])
    '; did you mean --top-p?'
    >>> _did_you_mean(["generat"], ["generate", "inspect"], options_only=False)
    '; did you mean generate?'
    >>> _did_you_mean(["--colour"], ["--top-p"])
    ''
    """
    pairs = []
    for word in words:
        if options_only and not (isinstance(word, str) and word.startswith("-")):
            continue                          # a value, such as the 0.9 of --topp 0.9
        name = str(word).split("=", 1)[0]
        close = difflib.get_close_matches(name, list(candidates), n=1)
        if close and close[0] != name:
            pairs.append((name, close[0]))
    if not pairs:
        return ""
    if len(pairs) == 1:
        return f"; did you mean {pairs[0][1]}?"
    return "; did you mean " + ", ".join(f"{m} for {w}" for w, m in pairs) + "?"


def _int_at_least(low: int):
    """An argparse ``type=``: an int >= ``low`` (0 or 1) that NumPy's int64 holds, else a
    one-line error naming the flag.

    >>> _int_at_least(1)("3")
    3
    >>> _int_at_least(1)("0")
    Traceback (most recent call last):
        ...
    argparse.ArgumentTypeError: must be a positive integer, got 0
    """
    kind = "a positive" if low == 1 else "a non-negative"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {kind} integer, got {value}")
        if value > _INT64_MAX:
            raise argparse.ArgumentTypeError(f"must be at most 2**63 - 1, got {value}")
        return value

    return parse


_INT64_MAX = 2**63 - 1
_POSITIVE_INT, _NON_NEGATIVE_INT = _int_at_least(1), _int_at_least(0)


def _option_error(err: Exception, command: str) -> CLIError:
    """The library's error about an option, worded for the command line: each option's Python
    name becomes its flag (``top_p`` -> ``--top-p``, ``do_sample=True`` -> ``--do-sample``).

    >>> print(_option_error(ValueError("top_p must be in (0, 1], got 1.5"), "generate"))
    --top-p must be in (0, 1], got 1.5
    >>> print(_option_error(ValueError("min_new_tokens (5) exceeds max_new_tokens (3)"), "generate"))
    --min-new-tokens (5) exceeds --max-new-tokens (3)
    >>> print(_option_error(ValueError("num_return_sequences (5) must be <= num_beams (4)"), "generate"))
    --num-return-sequences (5) must be <= --num-beams (4)
    >>> print(_option_error(ValueError("num_draft_tokens must be a positive integer, got 0"), "generate"))
    --draft-tokens must be a positive integer, got 0
    """
    message = " ".join(str(err).split("\n"))
    flags = [flag for row in _COMMANDS if row.name == command
             for flags, _ in row.arguments for flag in flags if flag.startswith("--")]
    pairs = [(flag[2:].replace("-", "_"), flag) for flag in flags]
    pairs += [(name, flag) for name, flag in _OTHER_NAMES.items() if flag in flags]
    for name, flag in pairs:
        if "_" in name:                   # a Python name: unambiguous wherever it stands
            message = re.sub(rf"\b{name}=True\b", flag, message)
            message = re.sub(rf"\b{name}=(?=\S)", flag + " ", message)
            message = re.sub(rf"\b{name}\b", flag, message)
        elif message.startswith(name + " "):  # "seed", "temperature": ordinary words elsewhere
            message = flag + message[len(name):]
    return CLIError(message)


# GenerationConfig's names whose flag is not the name with dashes
_OTHER_NAMES = {"stop_strings": "--stop", "draft_model": "--draft", "num_draft_tokens": "--draft-tokens"}


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


# ----------------------------------------------------------------------------- models
DEFAULT_MODEL = "shakespeare-char"


def _load_model(name_or_path: str):
    from .io import CheckpointError, load

    import warnings
    try:
        with warnings.catch_warnings(record=True) as notes:    # said in the error line below
            warnings.simplefilter("always")
            model = load(name_or_path)
    except (OSError, CheckpointError, ValueError) as err:
        raise CLIError(str(err).splitlines()[0]) from None
    if model.tokenizer is None:
        why = "".join(f" ({n.message})" for n in notes if "tokenizer" in str(n.message))
        raise CLIError(f"model {name_or_path!r} carries no tokenizer, so text cannot be "
                       f"encoded{why}")
    for note in notes:
        warnings.warn_explicit(note.message, note.category, note.filename, note.lineno)
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
# options that only change sampling; --seed too, as greedy, beam search and greedy speculative
# decoding draw no random numbers
_SAMPLING_ONLY = ("temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff",
                  "seed")


def _decoding_options(args) -> dict:
    """generate() keyword arguments from the command line, refusing combinations that would
    silently do nothing. Without --num-return-sequences, beam search returns every beam."""
    given = {name: getattr(args, name) for name in _SAMPLING_ONLY if getattr(args, name) is not None}
    if given and not args.do_sample:
        flag = "--" + next(iter(given)).replace("_", "-")
        raise CLIError(f"{flag} only changes sampling; add --do-sample (greedy and beam search ignore it)")
    if args.draft_tokens is not None and args.draft is None:
        raise CLIError("--draft-tokens only changes speculative decoding; add --draft MODEL")
    if args.stop is not None and "" in args.stop:     # every text contains '': it would stop at once
        raise CLIError("--stop must be a non-empty string, got ''")
    n = args.num_return_sequences
    if n is not None and n > 1 and not args.do_sample and args.num_beams < n:
        raise CLIError("--num-return-sequences > 1 needs --do-sample, or --num-beams at least as large")
    if n is None:
        n = args.num_beams if args.num_beams > 1 and not args.do_sample else 1
    early = {"true": True, "false": False, "never": "never"}[args.early_stopping]
    options = dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, seed=args.seed,
                   repetition_penalty=args.repetition_penalty, presence_penalty=args.presence_penalty,
                   frequency_penalty=args.frequency_penalty, no_repeat_ngram_size=args.no_repeat_ngram_size,
                   num_beams=args.num_beams, length_penalty=args.length_penalty, early_stopping=early,
                   num_return_sequences=n, min_new_tokens=args.min_new_tokens,
                   eos_token_id=args.eos_token_id, context_overflow=args.context_overflow,
                   stop_strings=None if args.stop is None else tuple(args.stop))
    if args.draft_tokens is not None:
        options["num_draft_tokens"] = args.draft_tokens
    options.update(given)
    return options


def _generation_config(args, model):
    """The run's GenerationConfig, every option checked (those that depend on the model too)
    before anything is printed."""
    from .generate import GenerationConfig

    try:
        config = GenerationConfig(**_decoding_options(args), logit_bias=_logit_bias(args.logit_bias, model))
    except ValueError as err:
        raise _option_error(err, "generate") from None
    V = model.config.vocab_size
    for token in () if config.eos_token_id is None else np.atleast_1d(config.eos_token_id):
        if token >= V:
            raise CLIError(f"--eos-token-id {int(token)} is out of range: the model's token ids "
                           f"are 0 to {V - 1}")
    if args.draft is not None:
        draft = _draft_model(args.draft, model)
        try:
            config = config.replace(draft_model=draft)
        except ValueError as err:
            raise _option_error(err, "generate") from None
    return config


def _bias_pair(text: str) -> tuple:
    """An argparse ``type=`` for --logit-bias: ``"KEY=BIAS"`` -> (KEY, BIAS as a finite float,
    the text). KEY is a token id or a token's text (:func:`_logit_bias` tells them apart); it
    may itself hold "=", since the bias is what follows the last one.

    >>> _bias_pair("10=-2.5"), _bias_pair("==5")
    (('10', -2.5, '10=-2.5'), ('=', 5.0, '==5'))
    >>> _bias_pair("e:5")
    Traceback (most recent call last):
        ...
    argparse.ArgumentTypeError: expected ID=BIAS (a token id or text, '=', a number), got 'e:5'
    """
    key, equals, number = text.rpartition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected ID=BIAS (a token id or text, '=', a number), got {text!r}")
    try:
        bias = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the bias {number!r} is not a number") from None
    if not np.isfinite(bias):
        raise argparse.ArgumentTypeError(f"{text!r}: the bias must be a finite number, got {number}")
    return key, bias, text


def _logit_bias(pairs, model):
    """{token id: bias} from --logit-bias's pairs (None without any; a later one for the same
    token wins). A key of digits is a token id; any other key is a text, which the model's
    tokenizer must encode to exactly one token, not counting the special tokens it adds
    around a whole text (the BOS of Llama-family tokenizers)."""
    if not pairs:
        return None
    V, bias = model.config.vocab_size, {}
    for key, value, text in pairs:
        if re.fullmatch("[0-9]+", key):
            token = int(key)
            if token >= V:
                raise CLIError(f"--logit-bias {text!r}: token id {token} is out of range: the "
                               f"model's token ids are 0 to {V - 1}")
        else:
            try:
                ids = _text_ids(model.tokenizer, key)
            except ValueError as err:
                raise CLIError(f"--logit-bias {text!r}: cannot encode {key!r}: {err}") from None
            if len(ids) != 1:
                raise CLIError(f"--logit-bias {text!r}: the model's tokenizer encodes {key!r} to "
                               f"{len(ids)} tokens, not one; give a token id instead")
            token = int(ids[0])
        bias[token] = value
    return bias


def _text_ids(tokenizer, text: str) -> list:
    """The token ids of ``text`` alone: without the special tokens (a BOS) that a tokenizer
    with that option (``add_special_tokens``, as a ``tokenizer.json``'s) adds around a prompt."""
    if "add_special_tokens" in inspect.signature(tokenizer.encode).parameters:
        return tokenizer.encode(text, add_special_tokens=False)
    return tokenizer.encode(text)


def _draft_model(name: str, model):
    """The --draft model, refused in one line unless its tokenizer is the model's (speculative
    decoding compares the two models' probabilities of the same token ids)."""
    try:
        draft = _load_model(name)
    except CLIError as err:
        raise CLIError(f"--draft: {err}") from None
    if draft.tokenizer != model.tokenizer or draft.config.vocab_size != model.config.vocab_size:
        mine, theirs = _vocabulary(draft), _vocabulary(model)
        differs = f"({mine}) is not the model's ({theirs})" if mine != theirs else \
            f"gives other ids to its tokens than the model's ({theirs}) does"
        raise CLIError(f"--draft {name!r}: its tokenizer {differs}; a draft model must share the "
                       f"model's tokenizer")
    return draft


def _vocabulary(model) -> str:
    return f"{type(model.tokenizer).__name__} of {model.config.vocab_size} tokens"


def _generate(args) -> int:
    model = _load_model(args.model)
    if args.prompt is None:
        args.prompt = "" if getattr(model.tokenizer, "add_bos", False) else "\n"
    prompt = _encode(model, args.prompt)
    config = _generation_config(args, model)
    seed_line = None
    if config.do_sample and config.seed is None:     # pick one, and say which: a good sample can be repeated
        seed = int.from_bytes(os.urandom(4), "little")
        config = config.replace(seed=seed)
        seed_line = f"seed: {seed} (pass --seed {seed} to repeat this sample)"
    if config.num_beams == 1 and config.num_return_sequences == 1:
        return _one_sequence(model, prompt, config, args.prompt, _Notes(seed_line))
    return _many_sequences(model, prompt, config, args.prompt, seed_line)


def _one_sequence(model, prompt, config, prompt_text: str, notes: "_Notes") -> int:
    """Print the prompt, then each new token as it is chosen: ``stream()``'s tokens, or with
    --draft the tokens generate()'s callback reports (speculative decoding is generate's) and
    then the rest of the final sequence."""
    from .generate import generate, stream

    text = _Text(_Continuation(model.tokenizer, prompt), prompt_text)

    def show(step, tokens):
        notes.step(step, tokens)
        text.add(tokens)

    result = None
    with _reported(notes, text):
        if config.draft_model is None:
            for tokens in stream(model, prompt, config):
                show(None, tokens)
        else:
            result = generate(model, prompt, config, callback=show)
    P = len(prompt)
    text.end(None if result is None else result.sequences[0, P:P + int(result.num_new_tokens[0])])
    notes.finish(len(text.ids), note="" if result is None else _acceptance(result, config))
    return 0


def _many_sequences(model, prompt, config, prompt_text: str, seed_line) -> int:
    """Beam search's candidates, or several samples, printed once the run is over. Meanwhile:
    on a terminal, beam search shows its best running beam in place (:func:`_beams_in_place`);
    otherwise a terminal's stderr shows a token counter."""
    from .generate import generate

    K, n = config.num_beams, config.num_return_sequences
    in_place = K > 1 and _is_terminal(sys.stdout)
    label = None if in_place else f"{_beam_kind(config)}, {K} beams" if K > 1 else f"sampling {n} sequences"
    notes = _Notes(seed_line, label, config.max_new_tokens)
    if in_place:
        result = _beams_in_place(model, prompt, config, prompt_text, notes)
    else:
        with _reported(notes):
            result = generate(model, prompt, config, callback=notes.step)
    _print_sequences(result, config, _Continuation(model.tokenizer, prompt), prompt_text, len(prompt))
    if K > 1:                                 # every step chose a token for each of K beams
        steps = int(result.num_new_tokens.max(initial=0))
        notes.finish(steps * K, f" ({steps} steps of {K} beams)")
    else:
        notes.finish(int(result.num_new_tokens.sum()), f" ({n} sequences)", _acceptance(result, config))
    return 0


def _beam_kind(config) -> str:
    """What a run with num_beams > 1 is called: beam sampling draws its beams (--do-sample),
    beam search keeps the most probable ones."""
    return "beam sampling" if config.do_sample else "beam search"


def _acceptance(result, config) -> str:
    """The summary's note on speculative decoding ('' without a draft model)."""
    rate = result.acceptance_rate
    if rate is None:
        return ""
    return f"; the draft's tokens accepted: {rate:.0%}"


def _beams_in_place(model, prompt, config, prompt_text: str, notes: "_Notes"):
    """The GenerateOutput of a beam search whose best running beam (``stream()``'s yields) is
    shown on stdout's line as it changes, then rubbed out."""
    from .generate import stream

    line = _LiveLine(sys.stdout, f"best of {config.num_beams} beams: ")
    after_prompt = _Continuation(model.tokenizer, prompt)
    steps = stream(model, prompt, config)
    with _reported(notes, line):
        while True:
            try:
                best = next(steps)            # (1, t): the best beam's new tokens so far
            except StopIteration as stop:
                result = stop.value
                break
            notes.step(None, best)
            line.show(prompt_text + after_prompt.decode(best[0].tolist()))
        line.clear()
    return result


def _print_sequences(result, config, tokenizer, prompt_text: str, P: int) -> None:
    """Beam search's candidates with their scores, best first, or the samples with log p."""
    K, out = config.num_beams, sys.stdout
    rows = zip(result.sequences, result.scores, result.num_new_tokens.tolist())
    if K > 1:
        shown = f"best {len(result.sequences)} of {K} beams" if len(result.sequences) < K else f"{K} beams"
        out.write(f"{_beam_kind(config)}, {shown}: the candidates, best first "
                  f"(score = sum log p / new_tokens ** {config.length_penalty})\n")
    for rank, (seq, score, n_new) in enumerate(rows):
        out.write(f"--- candidate {rank + 1}  score {_score_text(score)}\n" if K > 1 else
                  f"--- sample {rank + 1}  log p = {score:.2f} over {n_new} tokens\n")
        out.write(prompt_text + tokenizer.decode(seq[P:P + n_new].tolist()) + "\n")


def _score_text(score: float) -> str:
    """A beam's score with 4 decimals, or 4 significant digits when it is that close to 0
    (an extreme --length-penalty makes every score tiny: they must not all read -0.0000).

    >>> _score_text(-1.23456), _score_text(-6.04e-210), _score_text(0.0)
    ('-1.2346', '-6.040e-210', '0.0000')
    """
    return f"{score:.4f}" if score == 0 or not abs(score) < 1e-3 else f"{score:.3e}"


@contextlib.contextmanager
def _reported(notes: "_Notes", text: "_Text | None" = None):
    """Around a run: a failure rubs out the progress line, ends a half-printed text's line,
    and a ValueError of the library becomes a one-line error naming the flag."""
    try:
        yield
    except BaseException as err:
        notes.clear()
        if text is not None and isinstance(err, (ValueError, MemoryError)):
            text.abort()
        if isinstance(err, ValueError):
            raise _option_error(err, "generate") from None
        raise


class _Continuation:
    """Decodes new tokens as they read after the prompt: ``decode(prompt + ids)`` without
    ``decode(prompt)``. A SentencePiece tokenizer drops the space that begins a text, so the
    new tokens decoded alone would lose the space between the prompt and them."""

    def __init__(self, tokenizer, prompt):
        self.tokenizer, self.prompt = tokenizer, [int(i) for i in prompt]
        self.before = tokenizer.decode(self.prompt)

    def decode(self, ids):
        whole = self.tokenizer.decode(self.prompt + [int(i) for i in ids])
        if whole.startswith(self.before):
            return whole[len(self.before):]
        return self.tokenizer.decode(ids)


class _Text:
    """One continuation on stdout as its tokens come: the prompt with the first token, then
    what each token adds. The whole text is decoded and the new part printed, so that a
    character split across tokens comes out whole."""

    def __init__(self, tokenizer, prompt_text: str):
        self.tokenizer, self.prompt_text = tokenizer, prompt_text
        self.ids, self.shown, self.begun = [], "", False

    def add(self, tokens) -> None:
        """Append tokens (an array of one row's new ids, any shape) and print what is whole."""
        self._begin()
        self.ids.extend(np.asarray(tokens).ravel().tolist())
        text = self.tokenizer.decode(self.ids)
        if not text.endswith("\ufffd"):       # an incomplete character: wait for the rest
            sys.stdout.write(text[len(self.shown):])
            sys.stdout.flush()
            self.shown = text

    def end(self, ids=None) -> None:
        """Print the rest and end the line; ``ids``: the final new tokens, when known."""
        self._begin()
        if ids is not None:
            self.ids = [int(i) for i in ids]
        sys.stdout.write(self.tokenizer.decode(self.ids)[len(self.shown):] + "\n")

    def abort(self) -> None:
        """Failed half-way: end the line, so that the error starts one of its own."""
        if self.begun:
            sys.stdout.write("\n")
            sys.stdout.flush()

    def _begin(self) -> None:
        if not self.begun:
            self.begun = True
            sys.stdout.write(self.prompt_text)
            sys.stdout.flush()


class _Notes:
    """What generate writes on stderr besides errors: the seed it picked (once the run has
    begun, that is, once every option has passed), a token counter rewritten in place on a
    terminal, and a last line with the timing, as llama.cpp prints its timings.

    Only where someone may read them: not when stdout goes into a pipe and stderr is no
    terminal (a script reading both, or ``npgpt generate | head`` in a test: whose reader may go
    away at any moment, and then the command ends quietly), and no last line once stdout's
    reader has gone."""

    def __init__(self, seed_line=None, label=None, total_steps=0):
        self.shown = _is_terminal(sys.stderr) or not _is_pipe(sys.stdout)
        self.seed_line = seed_line if self.shown else None
        live = label is not None and _is_terminal(sys.stderr)
        self.counter = _LiveLine(sys.stderr, f"{label}: ") if live else None
        self.total, self.steps = total_steps, 0
        self.start = time.perf_counter()

    def step(self, step, tokens) -> None:
        """generate()'s callback: one more step (of ``tokens``, which only count here)."""
        self._seed()
        self.steps += 1
        if self.counter is not None:
            self.counter.show(f"token {self.steps}/{self.total}")

    def clear(self) -> None:
        """Rub out the counter."""
        if self.counter is not None:
            self.counter.clear()

    def finish(self, tokens: int, detail: str = "", note: str = "") -> None:
        """The last line: ``N tokens{detail} in S s (N/S tokens/s, T threads){note}``."""
        seconds = time.perf_counter() - self.start
        self.clear()
        self._seed()
        sys.stdout.flush()                    # a closed pipe shows here: main ends quietly
        if not self.shown or _reader_gone(sys.stdout):
            return
        rate = f"{tokens / seconds:,.1f} tokens/s, " if tokens and seconds > 0 else ""
        sys.stderr.write(f"{tokens:,} tokens{detail} in {seconds:.2f} s ({rate}{_threads_used()}){note}\n")
        sys.stderr.flush()

    def _seed(self) -> None:
        if self.seed_line:
            sys.stderr.write(self.seed_line + "\n")
            sys.stderr.flush()
            self.seed_line = None


class _LiveLine:
    """A terminal's line rewritten in place: ``label``, then the end of a text (newlines and
    other control characters escaped, as ``\\n``) that fits the terminal's width."""

    def __init__(self, stream, label: str):
        self.stream, self.label, self.width = stream, label, 0
        self.room = max(shutil.get_terminal_size().columns - 1 - len(label), 10)

    def show(self, text: str) -> None:
        flat = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        line = self.label + (flat if len(flat) <= self.room else "..." + flat[3 - self.room:])
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def clear(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0

    abort = clear                             # _reported's name for it


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):      # no isatty, or closed
        return False


def _is_pipe(stream) -> bool:
    """Whether ``stream`` is a pipe or a socket (whose reader may go away), not a terminal,
    a file or an in-memory buffer."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, ValueError, OSError):     # io.UnsupportedOperation is both
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _reader_gone(stream) -> bool:
    """Whether ``stream`` is a pipe whose reading end is closed (poll reports an error on it)."""
    if not _is_pipe(stream) or not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(stream.fileno(), select.POLLOUT)
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


# ----------------------------------------------------------------------------- pictures
# what matplotlib (>= 3.5, with the Pillow it requires) writes, by the file name's extension
_PICTURE_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


def _check_picture_path(path: str) -> None:
    """--png PATH must be a file name matplotlib can write, in a folder that exists: checked
    before any work, so that a typo costs nothing.

    >>> _check_picture_path("strategies.png")
    >>> _check_picture_path("no-such-folder/strategies.png")
    Traceback (most recent call last):
        ...
    npgpt.cli.CLIError: --png 'no-such-folder/strategies.png': there is no folder 'no-such-folder'
    """
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in _PICTURE_FORMATS:
        raise CLIError(f"--png {path!r}: the name must end in .png (or ."
                       f"{', .'.join(f for f in _PICTURE_FORMATS if f != 'png')})")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise CLIError(f"--png {path!r}: there is no folder {folder!r}")
    if os.path.isdir(path):
        raise CLIError(f"--png {path!r} is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"--png {path!r}: the folder {folder!r} is not writable")


def _draw(plot, *args, path: str, **kwargs) -> None:
    """Run the viz function ``plot`` that writes ``path``; its failures as one-line errors."""
    try:
        plot(*args, path=path, **kwargs)
    except ImportError as err:
        raise CLIError(str(err)) from None
    except OSError as err:
        raise CLIError(f"--png {path!r}: cannot write it ({err.strerror or err})") from None


# ----------------------------------------------------------------------------- inspect
def _inspect(args) -> int:
    from . import viz

    if args.png:
        _check_picture_path(args.png)
    model = _load_model(args.model)
    ids = _encode(model, args.prompt)
    window = ids[-model.config.context_length:]
    logits = model(window, last_only=True)
    try:
        report = viz.strategy_report(logits, seed=args.seed, temperature=args.temperature,
                                     top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                                     typical_p=args.typical_p)
        text = viz.inspect_text(report, labels=model.tokenizer, top=args.top)
    except ValueError as err:
        raise _option_error(err, "inspect") from None
    if args.png:                              # drawn before anything is printed
        _draw(viz.plot_strategies, report, labels=model.tokenizer, path=args.png)
    print(f"next token after {args.prompt!r} ({len(ids)} tokens):")
    print(text)
    if args.png:
        print(f"wrote {args.png}")
    return 0


# ----------------------------------------------------------------------------- plot
def _plot(args) -> int:
    from . import viz

    if args.what == "attention" and args.prompt is None:
        raise CLIError("plot attention needs --prompt TEXT")
    _check_picture_path(args.png)
    model = _load_model(args.model)
    text = args.prompt if args.prompt is not None else "ROMEO:\nBut soft, what light"
    try:
        ids = _encode(model, text)[: model.config.context_length]
    except CLIError:
        if args.prompt is not None:
            raise
        ids = np.arange(min(20, model.config.vocab_size, model.config.context_length))
    if args.what == "embeddings":
        _draw(viz.plot_embeddings, model, ids, path=args.png, labels=model.tokenizer)
    else:
        _draw(viz.plot_attention, model, ids, labels=model.tokenizer, path=args.png)
    print(f"wrote {args.png}")
    return 0


# ----------------------------------------------------------------------------- bench
def _convert(args) -> int:
    """npgpt convert IN OUT: :func:`npgpt.convert.convert`, its errors as one line."""
    from .convert import convert
    from .io import CheckpointError
    try:
        written = convert(args.input, args.output, format=args.format, dtype=args.dtype)
    except (OSError, CheckpointError, ValueError) as err:
        raise CLIError(str(err).splitlines()[0]) from None
    print(f"wrote {args.output} ({written}, {args.dtype})")
    return 0


def _bench(args) -> int:
    from .bench import conditions, format_table, load_average, run

    def progress(name):
        sys.stderr.write(f"running: {name}\n")
        sys.stderr.flush()

    load = load_average()
    rows = run(repeats=args.repeats, progress=progress)
    print(format_table(rows))
    print("\n".join(conditions(load)))
    print("(npgpt alone; the comparisons against PyTorch, transformers and tiktoken are the "
          "scripts in the repository's benchmarks/ folder)")
    return 0


# ----------------------------------------------------------------------------- train
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
                f"lr {info['lr']:.2e} | {info['tokens_per_second']:,.0f} tok/s | {_threads_used()} | "
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
        if field != flag and "_" in flag:          # num_kv_heads -> kv_heads: _option_error's --kv-heads
            message = re.sub(rf"\b{field}\b", flag, message)
        elif field != flag:                        # context_length -> --context, ...
            message = re.sub(rf"\b{field}=(?=\S)", f"--{flag} ", message)
            message = re.sub(rf"\b{field}\b", f"--{flag}", message)
    return _option_error(ValueError(message), "train")


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
    from .train import training_memory

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
    from . import GPT, GPTConfig
    from .tokenizers import CharTokenizer
    from .train import TrainConfig, TrainState, model_config

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

    from .train import architecture, load_checkpoint

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
    from .train import split_corpus

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
    from .train import architecture

    if architecture(cfg) == "gpt":
        return "GPT"
    kv = f", {cfg.kv_heads} key/value heads" if cfg.kv_heads != cfg.num_heads else ""
    return f"Llama-style (RMSNorm, rotary positions, SwiGLU width {cfg.ffn_size}{kv})"


def _gpt_count(cfg) -> str:
    """For a Llama-style config, the parameter count of the GPT of the same sizes."""
    from .train import architecture, num_parameters

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
    from .train import run_in_folder

    if args.resume and args.overwrite:
        raise CLIError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    found = None if args.resume or args.overwrite else run_in_folder(out_dir)
    if found:
        raise CLIError(f"--out {out_dir!r} already holds {found}: continue it with --resume, replace "
                       f"its files with --overwrite (other files are kept), or choose another --out")


def _train(args) -> int:
    from .train import TrainingError, TrainingInterrupted, train

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
          f"on {_threads_used()}; "
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


_MODEL_ARG = _arg("-m", "--model", default=DEFAULT_MODEL,
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
            _arg("-p", "--prompt", default=None, help="the text to continue (default: a newline, or "
                 "none when the model's tokenizer puts BOS first: BOS alone, as llama2.c starts)"),
            _arg("-n", "--max-new-tokens", type=_NON_NEGATIVE_INT, default=200),
            _arg("--min-new-tokens", type=_NON_NEGATIVE_INT, default=0),
            _arg("--do-sample", action="store_true", help="sample instead of greedy decoding"),
            _arg("--temperature", type=float, help="(default: 1.0)"),
            _arg("--top-k", type=_NON_NEGATIVE_INT),
            _arg("--top-p", type=float),
            _arg("--min-p", type=float),
            _arg("--typical-p", type=float),
            _arg("--epsilon-cutoff", type=float),
            _arg("--eta-cutoff", type=float),
            _arg("--repetition-penalty", type=float, default=1.0),
            _arg("--presence-penalty", type=float, default=0.0),
            _arg("--frequency-penalty", type=float, default=0.0),
            _arg("--no-repeat-ngram-size", type=_NON_NEGATIVE_INT, default=0),
            _arg("--num-beams", type=_POSITIVE_INT, default=1),
            _arg("--length-penalty", type=float, default=1.0),
            _arg("--early-stopping", choices=["true", "false", "never"], default="false"),
            _arg("--num-return-sequences", type=_POSITIVE_INT,
                 help="how many to print (default: 1, or every beam)"),
            _arg("--eos-token-id", type=_NON_NEGATIVE_INT, nargs="+", help="(default: none)"),
            _arg("--seed", type=_NON_NEGATIVE_INT, default=None,
                 help="with --do-sample (default: a new one each run, printed on stderr)"),
            _arg("--stop", action="append", metavar="STRING",
                 help="stop once the new text contains STRING, which ends the output; repeatable "
                      "(default: none)"),
            _arg("--logit-bias", action="append", type=_bias_pair, metavar="ID=BIAS",
                 help="add BIAS to the logit of token ID; repeatable. ID is a token id, or a text "
                      "the model's tokenizer encodes to exactly one token (digits are an id), "
                      "e.g. --logit-bias 'e=-5' (default: none)"),
            _arg("--draft", metavar="MODEL",
                 help="speculative decoding: a small model with the same tokenizer (a bundled "
                      "name, such as shakespeare-char-draft, or a path) proposes tokens, the "
                      "model checks them; the output distribution stays the model's (default: off)"),
            _arg("--draft-tokens", type=_POSITIVE_INT, metavar="K",
                 help="tokens the draft proposes in its first round; later rounds propose 2 more "
                      "after all were accepted, 1 fewer after a rejection, and stop early at a "
                      "token the draft doubts (default: 4)"),
            _arg("--context-overflow", choices=["exact", "chunk", "slide"], default="exact",
                 help="past the model's context length: exact re-encodes the last context-length "
                      "tokens at every step (as nanoGPT); chunk, each time the window fills, drops "
                      "its oldest half and re-encodes the rest once: faster, approximate; slide "
                      "(rotary-positions models only) keeps the KV cache, dropping its oldest "
                      "token each step: fastest, approximate past one layer")),
        handler=_generate),
    _Command(
        name="inspect", help="the next-token distribution and what each strategy does with it",
        description="For the next token: the model's distribution, what greedy, temperature, "
                    "top-k, top-p, min-p and typical sampling keep, and what each would choose.",
        examples=("npgpt inspect --prompt 'ROMEO: I'",
                  "npgpt inspect --prompt 'To be or not to b' --top-k 3 --top-p 0.5 --png strategies.png"),
        arguments=(
            _MODEL_ARG,
            _arg("-p", "--prompt", required=True),
            _arg("--temperature", type=float, default=0.8),
            _arg("--top-k", type=_NON_NEGATIVE_INT, default=5),
            _arg("--top-p", type=float, default=0.9),
            _arg("--min-p", type=float, default=0.1),
            _arg("--typical-p", type=float, default=0.9),
            _arg("--seed", type=_NON_NEGATIVE_INT, default=0),
            _arg("--top", type=_POSITIVE_INT, default=10, help="rows in the chart (default 10)"),
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
            _arg("--prompt", help="(default: 'ROMEO:\\nBut soft, what light' for embeddings; "
                                  "attention needs one)"),
            _MODEL_ARG),
        handler=_plot),
    _Command(
        name="convert", help="write a model as npgpt safetensors, a Hugging Face folder or GGUF",
        description="Load any model npgpt reads (a bundled name, safetensors, a PyTorch file, a "
                    "Hugging Face folder, GGUF) and write it in another format.",
        examples=("npgpt convert run1 run1.gguf --dtype q8_0        # for llama.cpp / ollama",
                  "npgpt convert model.gguf model-hf --format hf",
                  "npgpt convert shakespeare-char sc.safetensors --dtype f16"),
        arguments=(
            _arg("input", metavar="IN", help="a model npgpt.load reads"),
            _arg("output", metavar="OUT", help="the file or folder to write"),
            _arg("--format", choices=["safetensors", "hf", "gguf"],
                 help="(default: gguf for *.gguf, safetensors for *.safetensors, else hf)"),
            _arg("--dtype", choices=["f32", "f16", "q8_0"], default="f32",
                 help="f16: safetensors or gguf; q8_0: gguf only")),
        handler=_convert),
    _Command(
        name="bench", help="time npgpt on this machine (NumPy only)",
        description="Run the benchmarks that need no optional package and print a table.",
        examples=("npgpt bench", "npgpt bench --repeats 9"),
        arguments=(_arg("--repeats", type=_POSITIVE_INT, default=5),),
        handler=_bench),
    _Command(
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
            _arg("--data", help="a UTF-8 text file (default: the pydoc_data topic texts)"),
            _arg("--out", default="out", help="output folder (default: out); one run at a time; "
                 "one that holds a run needs --resume or --overwrite"),
            _arg("--arch", choices=["gpt", "llama"],
                 help="gpt: GPT-2's block; llama: RMSNorm, rotary positions, SwiGLU (its width "
                      "chosen for the GPT's parameter count), no output bias (default: gpt)"),
            _arg("--kv-heads", type=_POSITIVE_INT,
                 help="--arch llama: key/value heads of grouped-query attention, dividing "
                      "--heads (default: as many as --heads)"),
            _arg("--layers", type=_POSITIVE_INT, help=f"transformer blocks {_default('layers')}"),
            _arg("--heads", type=_POSITIVE_INT, help=f"attention heads {_default('heads')}"),
            _arg("--d-model", type=_POSITIVE_INT, help=f"width of the token vectors {_default('d_model')}"),
            _arg("--context", type=_POSITIVE_INT, help=f"tokens of context {_default('context')}"),
            _arg("--residual", choices=["pre_norm", "seed"],
                 help=f"pre_norm: GPT-2's blocks; seed: the tutorial's {_default('residual')}"),
            _arg("--gelu", choices=["exact", "tanh"], help=f"tanh: GPT-2's approximation {_default('gelu')}"),
            _arg("--tie-embeddings", action="store_true", default=None,
                 help=f"the output layer reuses the token table {_default('tie_embeddings')}"),
            _arg("--dropout", type=float, help=f"dropout probability while training {_default('dropout')}"),
            _arg("--batch-size", type=_POSITIVE_INT, help=f"windows a step {_default('batch_size')}"),
            _arg("--steps", type=_POSITIVE_INT,
                 help=f"optimiser steps in all (default {_DEFAULT_STEPS}; with --resume: a new total)"),
            _arg("--lr", type=float, help=f"peak learning rate {_default('lr')}"),
            _arg("--min-lr", type=float, help=f"final learning rate {_default('min_lr')}"),
            _arg("--warmup", type=_NON_NEGATIVE_INT,
                 help=f"steps of linear warm-up {_default('warmup')}; a run of no more --steps "
                      f"never leaves it: a warning says so"),
            _arg("--weight-decay", type=float, help=f"AdamW's decay of the weight matrices {_default('weight_decay')}"),
            _arg("--beta2", type=float, help=f"AdamW's second-moment decay {_default('beta2')}"),
            _arg("--grad-clip", type=float, help=f"largest gradient norm, 0: no clipping {_default('grad_clip')}"),
            _arg("--eval-interval", type=_POSITIVE_INT, help=f"steps between evaluations {_default('eval_interval')}"),
            _arg("--eval-iters", type=_POSITIVE_INT, help=f"batches an evaluation {_default('eval_iters')}"),
            _arg("--seed", type=_NON_NEGATIVE_INT, help=f"seed of the weights, batches and dropout {_default('seed')}"),
            _arg("--resume", action="store_true",
                 help="continue from OUT/ckpt.npz with its settings: only --steps may change, "
                      "other flags must match it"),
            _arg("--overwrite", action="store_true",
                 help="start a new run in an --out folder that holds one, replacing its "
                      "ckpt.npz and model.safetensors as the new run saves (other files are "
                      "kept); without it such a folder is refused")),
        handler=_train),
)

_EXAMPLES = ("npgpt generate --prompt 'ROMEO:' --do-sample --temperature 0.8 --top-p 0.9",
             "npgpt inspect --prompt 'ROMEO: I'",
             "npgpt train --data input.txt --out run1",
             "npgpt bench")


def _chat_command(generate: _Command) -> _Command:
    """``npgpt chat``: generate's decoding options (--max-new-tokens 512 by default), a required
    --model and --system; the handler is in ``npgpt/chat/command.py``."""
    def run(args):
        from .chat.command import run
        return run(args)

    options = tuple((flags, {**kw, "default": 512} if flags[-1] == "--max-new-tokens" else kw)
                    for flags, kw in generate.arguments if flags[-1] not in ("--model", "--prompt"))
    return _Command(
        name="chat", help="talk to an instruct model, turn by turn, with its own chat template",
        description="A conversation with an instruct model (a GGUF file or a Hugging Face folder "
                    "whose tokenizer carries a chat template). On a terminal: a prompt with line "
                    "editing; from a pipe: one user turn per line, one answer per line. /reset "
                    "forgets the conversation, /exit ends it. The KV cache is kept between turns, "
                    "so a turn feeds only its new tokens.",
        examples=("npgpt chat -m SmolLM2-135M-Instruct.Q4_1.gguf",
                  "npgpt chat -m Qwen2.5-0.5B-Instruct/ --system 'Answer in one sentence.' --do-sample",
                  "printf 'What is the capital of France?\\nAnd of Germany?\\n' | npgpt chat -m model.gguf"),
        arguments=(_arg("-m", "--model", required=True, help="an instruct model: a GGUF file or a folder"),
                   _arg("--system", help="the system message (default: the template's own, if any)"))
                  + options,
        handler=run)


_COMMANDS = _COMMANDS[:1] + (_chat_command(_COMMANDS[0]),) + _COMMANDS[1:]


def _showing_default(flags, options: dict) -> dict:
    """add_argument's options, the help ending in "(default: ...)" as argparse's
    ArgumentDefaultsHelpFormatter writes it ("off" for None and False), unless it already says
    its default; a positional or a required option has none.

    >>> _showing_default(("--top-k",), dict(type=int))["help"]
    '(default: off)'
    >>> _showing_default(("--repeats",), dict(type=int, default=5, help="times each"))["help"]
    'times each (default: 5)'
    """
    help_text = options.get("help") or ""
    if not flags[0].startswith("-") or options.get("required") or "(default" in help_text:
        return options
    default = options.get("default")
    shown = "off" if default is None or default is False else str(default).replace("%", "%%")
    return {**options, "help": f"{help_text} (default: {shown})".lstrip()}


_THREADS_HELP = ("threads for the matrix products and row-wise steps (default: chosen per call: one "
                 "for small work or while other processes keep a core busy, else every core; "
                 "NPGPT_NUM_THREADS sets it too)")


def _threads_used() -> str:
    """``"1 thread"`` / ``"2 threads"``: the count npgpt's last call ran on."""
    from .threads import get_num_threads

    n = get_num_threads()
    return f"{n} thread{'s' if n != 1 else ''}"


def _run_command(args) -> int:
    """``args.func(args)`` on ``--threads`` threads when given (a bad NPGPT_NUM_THREADS: one line)."""
    from . import threads

    try:
        threads.forced()                      # reads NPGPT_NUM_THREADS: a bad value fails here
    except ValueError as err:
        if args.threads is None:
            raise CLIError(str(err)) from None
    if args.threads is None:
        return args.func(args)
    with threads.using(args.threads):
        return args.func(args)


def build_parser() -> argparse.ArgumentParser:
    """The ``npgpt`` argument parser: one sub-command per row of ``_COMMANDS``.

    Parsing fills in every default, and ``args.func`` is the function that runs the command.

    Examples
    --------
    >>> args = build_parser().parse_args(["generate", "--prompt", "hi", "--top-k", "5"])
    >>> args.command, args.prompt, args.top_k, args.max_new_tokens, args.do_sample
    ('generate', 'hi', 5, 200, False)
    """
    from . import __version__

    parser = _Parser(prog="npgpt", formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="A GPT language model and every common decoding strategy, in NumPy.",
                     epilog=_epilog(_EXAMPLES, "run 'npgpt COMMAND --help' for each command's options"))
    parser.add_argument("--version", action="version", version=f"npgpt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = sub.choices             # name -> the sub-command's parser
    for command in _COMMANDS:
        command_parser = sub.add_parser(command.name, help=command.help, description=command.description,
                                        epilog=_epilog(command.examples, command.footer),
                                        formatter_class=argparse.RawDescriptionHelpFormatter)
        for flags, options in command.arguments:
            command_parser.add_argument(*flags, **_showing_default(flags, options))
        command_parser.add_argument("--threads", type=_POSITIVE_INT, metavar="N", help=_THREADS_HELP)
        command_parser.set_defaults(func=command.handler)
    return parser


def main(argv=None) -> int:
    """Run ``npgpt ARGV...`` (default: the process's arguments) and return the exit code.

    The command prints its results; a user error prints one line to stderr and exits with
    2 (``SystemExit``), before the command prints anything; Ctrl-C returns 130; a reader that
    goes away (``npgpt generate | head``) ends the command quietly with 141, as a shell
    reports ``cat`` ended by SIGPIPE.

    Examples
    --------
    Greedy decoding with the bundled Shakespeare model, streamed as it goes:

    >>> main(["generate", "--prompt", "ROMEO:", "--max-new-tokens", "40"])
    ROMEO:
    I will not so soon to the seat of the s
    0
    """
    parser = build_parser()
    command = None
    _tolerant_stdout()
    try:
        args = parser.parse_args(argv)
        command = args.command
        code = _run_command(args)
        sys.stdout.flush()                    # a closed pipe shows here, not at exit
        return code
    except CLIError as err:
        parser.exit(2, f"npgpt {command}: error: {' '.join(str(err).splitlines())}\n")
    except MemoryError as err:                # a last resort: options asking for too much
        parser.exit(2, f"npgpt {command}: error: out of memory ({err or 'MemoryError'}); "
                       f"the options ask for more than this machine has\n")
    except KeyboardInterrupt:                 # Ctrl-C in generate / inspect / bench: no traceback
        sys.stderr.write("\ninterrupted\n")
        return 130
    except BrokenPipeError:                   # stdout's reader is gone: stop, say nothing
        _silence_stdout()
        return 141


def _tolerant_stdout() -> None:
    """On a stdout that cannot show every character (``PYTHONIOENCODING=ascii``, an old
    Windows console), print '?' for those instead of failing half-way through a line."""
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        try:
            sys.stdout.reconfigure(errors="replace")
        except (ValueError, OSError):         # already written to in a way that forbids it
            pass


def _silence_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's last flush of what is still
    buffered for the closed pipe does not fail at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (tests capture stdout)
        pass


if __name__ == "__main__":
    sys.exit(main())
