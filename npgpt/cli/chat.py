"""``npgpt chat -m MODEL``: talk to an instruct model, one turn at a time.

On a terminal it shows a prompt (``> ``) with line editing (the standard library's readline,
where the platform has it) and streams each answer. With stdin from a pipe it reads one user
turn per line and prints each answer on its own line, so it can be scripted:
``printf 'Hi\\nAnd you?\\n' | npgpt chat -m model.gguf``. ``/reset`` forgets the conversation,
``/exit`` (or end of input) ends it. Every decoding option of ``npgpt generate`` applies; the
seed and each answer's speed go to stderr, as ``generate`` writes them.
"""

from __future__ import annotations

import os
import sys

from ._options import GENERATE_ARGUMENTS, generation_config, load_model
from ._output import is_pipe, is_terminal, reader_gone
from ._parsing import CLIError, Command, arg

COMMANDS_HELP = "/reset forgets the conversation, /exit ends it"


def _chat(args) -> int:
    """The ``chat`` command (``args`` from the ``npgpt`` parser); returns the exit code."""
    from ..chat.session import Chat
    from ..chat.template import TemplateError

    model = load_model(args.model)
    if getattr(model.tokenizer, "chat_template", None) is None:
        raise CLIError(f"model {args.model!r} has no chat template (its files carry none): "
                       f"chat needs an instruct model; use 'npgpt generate' for plain text")
    config = generation_config(args, model)
    if config.num_beams > 1 or config.num_return_sequences > 1:
        raise CLIError("chat answers with one sequence: --num-beams and --num-return-sequences "
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
        raise CLIError(str(err).splitlines()[0]) from None
    interactive = is_terminal(sys.stdin) and is_terminal(sys.stdout)
    notes_shown = is_terminal(sys.stderr) or not is_pipe(sys.stdout)
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
    from ..chat.template import TemplateError

    try:
        for piece in chat.stream(line):
            sys.stdout.write(piece)
            sys.stdout.flush()
    except (ValueError, TemplateError) as err:
        sys.stdout.write("\n")
        raise CLIError(str(err).splitlines()[0]) from None
    sys.stdout.write("\n")
    sys.stdout.flush()
    turn = chat.turns[-1]
    if notes_shown and not reader_gone(sys.stdout):
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


# generate's decoding options (--max-new-tokens 512 by default)
_OPTIONS = tuple((flags, {**kw, "default": 512} if flags[-1] == "--max-new-tokens" else kw)
                 for flags, kw in GENERATE_ARGUMENTS if flags[-1] not in ("--model", "--prompt"))

COMMAND = Command(
    name="chat", help="talk to an instruct model, turn by turn, with its own chat template",
    description="A conversation with an instruct model (a GGUF file or a Hugging Face folder "
                "whose tokenizer carries a chat template). On a terminal: a prompt with line "
                "editing; from a pipe: one user turn per line, one answer per line. /reset "
                "forgets the conversation, /exit ends it. The KV cache is kept between turns, "
                "so a turn feeds only its new tokens.",
    examples=("npgpt chat -m SmolLM2-135M-Instruct.Q4_1.gguf",
              "npgpt chat -m Qwen2.5-0.5B-Instruct/ --system 'Answer in one sentence.' --do-sample",
              "printf 'What is the capital of France?\\nAnd of Germany?\\n' | npgpt chat -m model.gguf"),
    arguments=(arg("-m", "--model", required=True, help="an instruct model: a GGUF file or a folder"),
               arg("--system", help="the system message (default: the template's own, if any)"))
              + _OPTIONS,
    handler=_chat)
