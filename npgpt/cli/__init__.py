"""The ``npgpt`` command line (it prints; the library never does).

    npgpt generate ...     continue a prompt (the bundled Shakespeare model by default)
    npgpt chat -m MODEL    talk to an instruct model, turn by turn, with its chat template
    npgpt inspect ...      the next-token distribution and what each strategy keeps
    npgpt plot ...         the seed's embedding heatmaps, attention maps
    npgpt train ...        train a character-level model on a text file
    npgpt bench            time npgpt on this machine
    npgpt convert IN OUT   write a model as safetensors, a Hugging Face folder or GGUF

Every command answers --help with examples. User errors print one line and exit with 2,
before anything else is printed; Ctrl-C exits with 130, and a closed pipe
(``npgpt generate | head``) ends the command quietly, as it ends ``cat``. Besides its text,
generate writes on stderr the seed it picked (sampling without --seed), a counter or the best
running beam on a terminal, and a last line with its timing (:mod:`npgpt.cli.generate`).

One module per command (``generate``, ``chat``, ``inspect``, ``plot``, ``convert``, ``bench``,
``train``), each a :class:`~npgpt.cli._parsing.Command` row beside the function that runs it
and importing its heavy modules only when it runs; what they share: ``_parsing`` (CLIError,
the parser, option types, library errors worded with flags), ``_options`` (--model and
generate's decoding options, which chat shares) and ``_output`` (terminals, pipes, picture
files); ``main`` builds the parser from the rows and maps errors to exit codes.
"""

from ._options import DEFAULT_MODEL
from ._parsing import CLIError
from .main import build_parser, main
from .train import default_corpus

__all__ = ["CLIError", "DEFAULT_MODEL", "build_parser", "default_corpus", "main"]
