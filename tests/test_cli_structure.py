"""The command line's structure: one module per command, its Command row beside its handler;
what the commands share in the package's private modules, under public names; no import cycle
through ``npgpt.cli``; the entry points (``npgpt.cli:main``, ``python -m npgpt``,
``python -m npgpt.cli``) unchanged; and no heavy module imported before a command runs."""

import configparser
import importlib
import os
import subprocess
import sys
import traceback

import pytest

import npgpt.cli
from npgpt.cli import CLIError, build_parser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import structure  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("generate", "chat", "inspect", "plot", "convert", "bench", "train")
# what a command imports only when it runs (the library's own heavy parts and optional packages)
LAZY = ("npgpt.train", "npgpt.viz", "npgpt.bench", "npgpt.convert", "matplotlib", "readline", "pydoc_data")


def sub_parsers():
    return build_parser().commands


def test_the_commands_are_those_of_npgpt_help_in_its_order():
    assert tuple(sub_parsers()) == COMMANDS


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_its_module_with_its_row_beside_its_handler(name):
    module = importlib.import_module(f"npgpt.cli.{name}")
    assert module.COMMAND.name == name
    assert module.COMMAND.handler.__module__ == module.__name__
    assert sub_parsers()[name].get_default("func") is module.COMMAND.handler


def test_no_import_cycle_runs_through_the_command_line():
    edges, _ = structure.import_graph()
    through = [c for c in structure.cycles(edges) if any(m.split(".")[:2] == ["npgpt", "cli"] for m in c)]
    assert not through, through


def test_the_command_line_imports_no_private_name_from_another_module():
    _, private = structure.import_graph()
    crossing = [(importer, f"{module}.{name}") for importer, module, name in private
                if importer.split(".")[:2] == ["npgpt", "cli"]]
    assert not crossing, crossing


def test_no_command_line_module_or_function_is_long():
    modules = [(path, n) for path, n in structure.long_modules() if path.startswith("npgpt/cli")]
    functions = [(path, name, n) for path, name, n in structure.long_functions() if path.startswith("npgpt/cli")]
    assert not modules and not functions, (modules, functions)


def test_the_public_names_and_the_console_script_still_resolve():
    from npgpt.cli import DEFAULT_MODEL, default_corpus, main
    from npgpt.cli.main import build_parser as built_here
    from npgpt.cli.main import main as main_here

    assert (main, build_parser) == (main_here, built_here)
    assert DEFAULT_MODEL == "shakespeare-char" and callable(default_corpus)
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    script = config["options.entry_points"]["console_scripts"].strip()
    name, target = (part.strip() for part in script.split("="))
    module, function = target.split(":")
    assert name == "npgpt" and getattr(importlib.import_module(module), function) is main


def test_cli_error_is_named_by_its_public_home():
    assert CLIError is npgpt.cli.CLIError
    assert traceback.format_exception_only(CLIError("bad flag")) == ["npgpt.cli.CLIError: bad flag\n"]


@pytest.mark.parametrize("module", ["npgpt", "npgpt.cli"])
def test_python_dash_m_runs_the_command_line(module):
    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout == f"npgpt {npgpt.__version__}\n", done.stderr


def test_chat_takes_generate_s_decoding_options_but_the_model_and_the_prompt():
    parsers = sub_parsers()
    generate = [a.option_strings for a in parsers["generate"]._actions]
    chat = [a.option_strings for a in parsers["chat"]._actions]
    decoding = [o for o in generate if o and o[-1] not in ("--help", "--model", "--prompt")]
    assert chat[3:] == decoding             # after --help, --model, --system: generate's, in order
    args = build_parser().parse_args(["chat", "-m", "model.gguf", "--system", "Be brief."])
    assert (args.system, args.max_new_tokens, args.func.__module__) == ("Be brief.", 512, "npgpt.cli.chat")


def test_starting_the_command_line_imports_no_command_s_heavy_module():
    code = ("import sys, npgpt.cli; npgpt.cli.build_parser(); "
            f"print(' '.join(m for m in {LAZY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
