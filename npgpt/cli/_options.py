"""The options that load a model (``--model``) and the decoding options of ``generate``,
which ``chat`` shares: the argument table (:data:`GENERATE_ARGUMENTS`) and the checked
GenerationConfig it gives (:func:`generation_config`)."""

from __future__ import annotations

import argparse
import inspect
import re

import numpy as np

from ._parsing import NON_NEGATIVE_INT, POSITIVE_INT, CLIError, arg, option_error

DEFAULT_MODEL = "shakespeare-char"


def load_model(name_or_path: str):
    """:func:`npgpt.load`'s model, which must carry a tokenizer; a failure as one line (its
    warnings shown after a load that succeeds)."""
    from ..io import CheckpointError, load

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


def encode(model, text: str):
    """The prompt's token ids (int64), refused in one line when it encodes to none."""
    try:
        ids = model.tokenizer.encode(text)
    except ValueError as err:
        raise CLIError(f"cannot encode the prompt: {err}") from None
    if len(ids) == 0:
        raise CLIError("the prompt encodes to no tokens; give a non-empty --prompt")
    return np.array(ids, dtype=np.int64)


# ----------------------------------------------------------------------------- decoding options
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


def generation_config(args, model):
    """The run's GenerationConfig, every option checked (those that depend on the model too)
    before anything is printed."""
    from ..decoding import GenerationConfig

    try:
        config = GenerationConfig(**_decoding_options(args), logit_bias=_logit_bias(args.logit_bias, model))
    except ValueError as err:
        raise option_error(err, GENERATE_ARGUMENTS) from None
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
            raise option_error(err, GENERATE_ARGUMENTS) from None
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
        draft = load_model(name)
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


MODEL_ARG = arg("-m", "--model", default=DEFAULT_MODEL,
                help=f"a bundled model's name or a checkpoint path (default: {DEFAULT_MODEL})")

# generate's arguments, in --help order (chat takes them but --model and --prompt)
GENERATE_ARGUMENTS = (
    MODEL_ARG,
    arg("-p", "--prompt", default=None, help="the text to continue (default: a newline, or "
        "none when the model's tokenizer puts BOS first: BOS alone, as llama2.c starts)"),
    arg("-n", "--max-new-tokens", type=NON_NEGATIVE_INT, default=200),
    arg("--min-new-tokens", type=NON_NEGATIVE_INT, default=0),
    arg("--do-sample", action="store_true", help="sample instead of greedy decoding"),
    arg("--temperature", type=float, help="(default: 1.0)"),
    arg("--top-k", type=NON_NEGATIVE_INT),
    arg("--top-p", type=float),
    arg("--min-p", type=float),
    arg("--typical-p", type=float),
    arg("--epsilon-cutoff", type=float),
    arg("--eta-cutoff", type=float),
    arg("--repetition-penalty", type=float, default=1.0),
    arg("--presence-penalty", type=float, default=0.0),
    arg("--frequency-penalty", type=float, default=0.0),
    arg("--no-repeat-ngram-size", type=NON_NEGATIVE_INT, default=0),
    arg("--num-beams", type=POSITIVE_INT, default=1),
    arg("--length-penalty", type=float, default=1.0),
    arg("--early-stopping", choices=["true", "false", "never"], default="false"),
    arg("--num-return-sequences", type=POSITIVE_INT,
        help="how many to print (default: 1, or every beam)"),
    arg("--eos-token-id", type=NON_NEGATIVE_INT, nargs="+", help="(default: none)"),
    arg("--seed", type=NON_NEGATIVE_INT, default=None,
        help="with --do-sample (default: a new one each run, printed on stderr)"),
    arg("--stop", action="append", metavar="STRING",
        help="stop once the new text contains STRING, which ends the output; repeatable "
             "(default: none)"),
    arg("--logit-bias", action="append", type=_bias_pair, metavar="ID=BIAS",
        help="add BIAS to the logit of token ID; repeatable. ID is a token id, or a text "
             "the model's tokenizer encodes to exactly one token (digits are an id), "
             "e.g. --logit-bias 'e=-5' (default: none)"),
    arg("--draft", metavar="MODEL",
        help="speculative decoding: a small model with the same tokenizer (a bundled "
             "name, such as shakespeare-char-draft, or a path) proposes tokens, the "
             "model checks them; the output distribution stays the model's (default: off)"),
    arg("--draft-tokens", type=POSITIVE_INT, metavar="K",
        help="tokens the draft proposes in its first round; later rounds propose 2 more "
             "after all were accepted, 1 fewer after a rejection, and stop early at a "
             "token the draft doubts (default: 4)"),
    arg("--context-overflow", choices=["exact", "chunk", "slide"], default="exact",
        help="past the model's context length: exact re-encodes the last context-length "
             "tokens at every step (as nanoGPT); chunk, each time the window fills, drops "
             "its oldest half and re-encodes the rest once: faster, approximate; slide "
             "(rotary-positions models only) keeps the KV cache, dropping its oldest "
             "token each step: fastest, approximate past one layer"))
