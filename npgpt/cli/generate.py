"""``npgpt generate``: continue a prompt, streaming each token as it is chosen; beam search's
candidates or several samples once the run is over. Besides its text, it writes on stderr the
seed it picked (sampling without --seed), a counter or the best running beam on a terminal,
and a last line with its timing (:class:`_Notes`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time

import numpy as np

from ._options import GENERATE_ARGUMENTS, encode, generation_config, load_model
from ._output import is_pipe, is_terminal, reader_gone, threads_used
from ._parsing import Command, option_error


def _generate(args) -> int:
    model = load_model(args.model)
    if args.prompt is None:
        args.prompt = "" if getattr(model.tokenizer, "add_bos", False) else "\n"
    prompt = encode(model, args.prompt)
    config = generation_config(args, model)
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
    from ..generation import generate, stream

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
    from ..generation import generate

    K, n = config.num_beams, config.num_return_sequences
    in_place = K > 1 and is_terminal(sys.stdout)
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
    from ..generation import stream

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
            raise option_error(err, GENERATE_ARGUMENTS) from None
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
        self.shown = is_terminal(sys.stderr) or not is_pipe(sys.stdout)
        self.seed_line = seed_line if self.shown else None
        live = label is not None and is_terminal(sys.stderr)
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
        if not self.shown or reader_gone(sys.stdout):
            return
        rate = f"{tokens / seconds:,.1f} tokens/s, " if tokens and seconds > 0 else ""
        sys.stderr.write(f"{tokens:,} tokens{detail} in {seconds:.2f} s ({rate}{threads_used()}){note}\n")
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


COMMAND = Command(
    name="generate", help="continue a prompt (streams as it goes)",
    description="Continue a prompt with greedy decoding, sampling or beam search.",
    examples=("npgpt generate --prompt 'ROMEO:' --max-new-tokens 200 --do-sample --temperature 0.8 --top-p 0.9",
              "npgpt generate --prompt 'JULIET:' --do-sample --min-p 0.1 --seed 3 --num-return-sequences 3",
              "npgpt generate --prompt 'To be' --num-beams 4 --max-new-tokens 30",
              "npgpt generate --model out/model.safetensors --prompt 'Hello'"),
    arguments=GENERATE_ARGUMENTS,
    handler=_generate)
