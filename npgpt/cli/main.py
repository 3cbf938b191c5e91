"""``npgpt``'s parser and :func:`main`: one sub-command per row of :data:`COMMANDS` (each row
beside its handler, in its command's module), ``--threads`` for each, and the exit codes."""

from __future__ import annotations

import argparse
import os
import sys

from . import bench, chat, convert, generate, inspect, plot, train
from ._parsing import POSITIVE_INT, CLIError, Parser

COMMANDS = tuple(module.COMMAND for module in (generate, chat, inspect, plot, convert, bench, train))

_EXAMPLES = ("npgpt generate --prompt 'ROMEO:' --do-sample --temperature 0.8 --top-p 0.9",
             "npgpt inspect --prompt 'ROMEO: I'",
             "npgpt train --data input.txt --out run1",
             "npgpt bench")


def _epilog(examples, footer=""):
    """The end of a --help: "examples:", the command lines indented, then ``footer``."""
    lines = ["examples:"] + ["  " + example for example in examples]
    if footer:
        lines.append(footer)
    return "\n".join(lines)


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


def _run_command(args) -> int:
    """``args.func(args)`` on ``--threads`` threads when given (a bad NPGPT_NUM_THREADS: one line)."""
    from .. import threads

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
    """The ``npgpt`` argument parser: one sub-command per row of ``COMMANDS``.

    Parsing fills in every default, and ``args.func`` is the function that runs the command.

    Examples
    --------
    >>> args = build_parser().parse_args(["generate", "--prompt", "hi", "--top-k", "5"])
    >>> args.command, args.prompt, args.top_k, args.max_new_tokens, args.do_sample
    ('generate', 'hi', 5, 200, False)
    """
    from .. import __version__

    parser = Parser(prog="npgpt", formatter_class=argparse.RawDescriptionHelpFormatter,
                    description="A GPT language model and every common decoding strategy, in NumPy.",
                    epilog=_epilog(_EXAMPLES, "run 'npgpt COMMAND --help' for each command's options"))
    parser.add_argument("--version", action="version", version=f"npgpt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = sub.choices             # name -> the sub-command's parser
    for command in COMMANDS:
        command_parser = sub.add_parser(command.name, help=command.help, description=command.description,
                                        epilog=_epilog(command.examples, command.footer),
                                        formatter_class=argparse.RawDescriptionHelpFormatter)
        for flags, options in command.arguments:
            command_parser.add_argument(*flags, **_showing_default(flags, options))
        command_parser.add_argument("--threads", type=POSITIVE_INT, metavar="N", help=_THREADS_HELP)
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
