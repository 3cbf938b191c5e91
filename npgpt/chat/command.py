"""``npgpt chat -m MODEL``: talk to an instruct model, one turn at a time.

On a terminal it shows a prompt (``> ``) with line editing (the standard library's readline,
where the platform has it) and streams each answer. With stdin from a pipe it reads one user
turn per line and prints each answer on its own line, so it can be scripted:
``printf 'Hi\\nAnd you?\\n' | npgpt chat -m model.gguf``. ``/reset`` forgets the conversation,
``/exit`` (or end of input) ends it. Every decoding option of ``npgpt generate`` applies; the
seed and each answer's speed go to stderr, as ``generate`` writes them.
"""

import os
import sys

from .session import Chat
from .template import TemplateError

COMMANDS_HELP = "/reset forgets the conversation, /exit ends it"


def run(args) -> int:
    """The ``chat`` command (``args`` from the ``npgpt`` parser); returns the exit code.

    >>> from npgpt.cli import build_parser
    >>> args = build_parser().parse_args(["chat", "-m", "model.gguf", "--system", "Be brief."])
    >>> args.func.__name__, args.system, args.max_new_tokens
    ('run', 'Be brief.', 512)
    """
    from .. import cli

    model = cli._load_model(args.model)
    if getattr(model.tokenizer, "chat_template", None) is None:
        raise cli.CLIError(f"model {args.model!r} has no chat template (its files carry none): "
                           f"chat needs an instruct model; use 'npgpt generate' for plain text")
    config = cli._generation_config(args, model)
    if config.num_beams > 1 or config.num_return_sequences > 1:
        raise cli.CLIError("chat answers with one sequence: --num-beams and --num-return-sequences "
                           "do not apply")
    seed_note = None
    if config.do_sample and config.seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
        config = config.replace(seed=seed)
        seed_note = f"seed: {seed} (pass --seed {seed} to repeat this conversation)"
    options = {name: getattr(config, name) for name in config.__dataclass_fields__}
    if args.eos_token_id is None:
        options["eos_token_id"] = None          # the model's end-of-turn ids, found by Chat
    try:
        chat = Chat(model, system=args.system, **options)
    except (ValueError, TemplateError) as err:
        raise cli.CLIError(str(err).splitlines()[0]) from None
    interactive = cli._is_terminal(sys.stdin) and cli._is_terminal(sys.stdout)
    notes_shown = cli._is_terminal(sys.stderr) or not cli._is_pipe(sys.stdout)
    if interactive:
        _line_editing()
        sys.stderr.write(f"chatting with {args.model} ({COMMANDS_HELP})\n")
    if seed_note and notes_shown:
        sys.stderr.write(seed_note + "\n")
    while True:
        try:
            line = input("> ") if interactive else sys.stdin.readline()
        except EOFError:
            line = ""
        if not interactive and line == "":
            break
        line = line.rstrip("\n")
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip() == "/reset":
            chat.reset()
            if interactive:
                sys.stderr.write("(the conversation is forgotten)\n")
            continue
        if not line.strip():
            continue
        _answer(chat, line, notes_shown)
    return 0


def _answer(chat, line, notes_shown):
    from .. import cli
    try:
        for piece in chat.stream(line):
            sys.stdout.write(piece)
            sys.stdout.flush()
    except (ValueError, TemplateError) as err:
        sys.stdout.write("\n")
        raise cli.CLIError(str(err).splitlines()[0]) from None
    sys.stdout.write("\n")
    sys.stdout.flush()
    turn = chat.turns[-1]
    if notes_shown and not cli._reader_gone(sys.stdout):
        rate = turn["new_tokens"] / turn["seconds"] if turn["seconds"] > 0 else 0.0
        first = turn["first_token_seconds"]
        sys.stderr.write(f"{turn['new_tokens']:,} tokens in {turn['seconds']:.2f} s ({rate:,.1f} tokens/s); "
                         f"prompt {turn['prompt_tokens']:,} tokens, {turn['reused_tokens']:,} from the cache"
                         + (f", first token after {first:.2f} s" if first is not None else "") + "\n")
        sys.stderr.flush()


def _line_editing():
    try:
        import readline  # noqa: F401  (input() then edits lines and keeps a history)
    except ImportError:
        pass
