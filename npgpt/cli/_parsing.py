"""What every command's parsing shares: :class:`CLIError` (a user error: one line, exit code
2), the argparse parser that words its own errors that way, the integer option types, a library
error worded with the command's flags (:func:`option_error`), and the row that declares a
command (:class:`Command`, :func:`arg`)."""

from __future__ import annotations

import argparse
import difflib
import re
from typing import Callable, NamedTuple


class CLIError(Exception):
    """A user error: printed as one line, exit code 2.

    Examples
    --------
    >>> from npgpt.cli.train import _read_data
    >>> _read_data("missing.txt")
    Traceback (most recent call last):
        ...
    npgpt.cli.CLIError: data file 'missing.txt' does not exist

    ``npgpt train --data missing.txt`` prints it as
    ``npgpt train: error: data file 'missing.txt' does not exist`` and exits with 2.
    """

    __module__ = "npgpt.cli"                  # its public home: named npgpt.cli.CLIError


class Parser(argparse.ArgumentParser):
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
POSITIVE_INT, NON_NEGATIVE_INT = _int_at_least(1), _int_at_least(0)


def option_error(err: Exception, arguments: tuple) -> CLIError:
    """The library's error about an option, worded for the command line: each option's Python
    name becomes its flag (``top_p`` -> ``--top-p``, ``do_sample=True`` -> ``--do-sample``),
    the flags being those of the command's ``arguments`` (its :class:`Command` row's).

    >>> from npgpt.cli._options import GENERATE_ARGUMENTS

    >>> print(option_error(ValueError("top_p must be in (0, 1], got 1.5"), GENERATE_ARGUMENTS))
    --top-p must be in (0, 1], got 1.5
    >>> print(option_error(ValueError("min_new_tokens (5) exceeds max_new_tokens (3)"), GENERATE_ARGUMENTS))
    --min-new-tokens (5) exceeds --max-new-tokens (3)
    >>> print(option_error(ValueError("num_return_sequences (5) must be <= num_beams (4)"), GENERATE_ARGUMENTS))
    --num-return-sequences (5) must be <= --num-beams (4)
    >>> print(option_error(ValueError("num_draft_tokens must be a positive integer, got 0"), GENERATE_ARGUMENTS))
    --draft-tokens must be a positive integer, got 0
    """
    message = " ".join(str(err).split("\n"))
    flags = [flag for flags, _ in arguments for flag in flags if flag.startswith("--")]
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


# Every sub-command is a row (npgpt.cli.main.COMMANDS): its name, its one-line help (the command
# list of ``npgpt --help``), its description and examples (``npgpt NAME --help``), its arguments
# (exactly what argparse's add_argument takes) and the function that runs it.
class Command(NamedTuple):
    name: str
    help: str
    description: str
    examples: tuple           # command lines shown under "examples:" in --help
    arguments: tuple          # (flags, add_argument keyword arguments) pairs, in --help order
    handler: Callable[[argparse.Namespace], int]
    footer: str = ""          # a last line of the --help epilog, after the examples


def arg(*flags, **options):
    """One argument of a command: ``arg("--top-k", type=int)`` ~ ``add_argument("--top-k", type=int)``."""
    return flags, options
