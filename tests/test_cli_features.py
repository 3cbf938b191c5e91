"""The generate command as users of llama.cpp and nanoGPT expect it: --stop, --logit-bias,
--draft / --draft-tokens, --context-overflow; a picked seed that repeats a sample; a summary
line with the timing; -p / -n / -m; every option's default in --help; progress for beams and
several samples."""

import importlib
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import npgpt
from npgpt.cli import build_parser, main
from npgpt.cli._options import _bias_pair, _logit_bias
from npgpt.cli._output import reader_gone

from test_cli import model_path, run  # noqa: F401 - the tiny saved model, the in-process runner
from test_cli_hardening import assert_one_line_error

TIMEOUT = 120
BUNDLED = "shakespeare-char"
generate_module = importlib.import_module("npgpt.generation")   # npgpt.generate is the function
SUMMARY = re.compile(r"^(\d[\d,]*) tokens(.*?) in (\d+\.\d\d) s \((([\d,]+\.\d) tokens/s, )?\d+ threads?\)(.*)$")
SEED = re.compile(r"^seed: (\d+) \(pass --seed (\d+) to repeat this sample\)$")


@pytest.fixture(scope="module")
def shakespeare():
    return npgpt.load(BUNDLED)


def library_text(model, prompt, **options):
    """What npgpt.generate continues ``prompt`` with: the prompt and the new tokens' text."""
    out = npgpt.generate(model, model.tokenizer.encode(prompt), **options)
    n = int(out.num_new_tokens[0])
    P = len(model.tokenizer.encode(prompt))
    return prompt + model.tokenizer.decode(out.sequences[0, P:P + n].tolist()), out


def summary(err):
    """The summary line's (tokens, detail, note) from stderr; fails unless stderr ends with one."""
    match = SUMMARY.match(err.splitlines()[-1])
    assert match, err
    return int(match.group(1).replace(",", "")), match.group(2), match.group(6)


class Terminal(io.StringIO):
    def isatty(self):
        return True


# ------------------------------------------------------------ short flags, --help
@pytest.mark.parametrize("short, long", [
    (["generate", "-m", "x", "-p", "hi", "-n", "7"], ["generate", "--model", "x", "--prompt", "hi", "--max-new-tokens", "7"]),
    (["inspect", "-m", "x", "-p", "hi"], ["inspect", "--model", "x", "--prompt", "hi"]),
    (["plot", "embeddings", "--png", "e.png", "-m", "x"], ["plot", "embeddings", "--png", "e.png", "--model", "x"]),
])
def test_short_flags_mean_the_long_ones(short, long):
    parser = build_parser()
    assert vars(parser.parse_args(short)) == vars(parser.parse_args(long))


def test_short_flags_generate_the_same_text(capsys, model_path):
    assert (run(capsys, "generate", "-m", model_path, "-p", "ROMEO:", "-n", "9")[1]
            == run(capsys, "generate", "--model", model_path, "--prompt", "ROMEO:", "--max-new-tokens", "9")[1]
            != "")


def test_a_short_flag_s_error_names_the_long_flag(capsys):
    code, out, err = run(capsys, "generate", "-n", "x")
    assert_one_line_error(code, out, err, "argument --max-new-tokens: invalid int value: 'x'")


def _commands():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices.items()


@pytest.mark.parametrize("name, parser", _commands(), ids=[name for name, _ in _commands()])
def test_every_option_s_help_shows_its_default(name, parser):
    for action in parser._actions:
        if action.option_strings and action.default != "==SUPPRESS==" and not action.required:
            assert action.help and "(default" in action.help, (name, action.option_strings)
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "examples:" in text                              # the examples stay


def test_help_keeps_its_texts_and_adds_the_defaults(capsys):
    _, generate_help, _ = run(capsys, "generate", "--help")
    flat = " ".join(generate_help.split())
    for text in ("the text to continue (default: a newline, or none when the model's tokenizer puts BOS first", "sample instead of greedy decoding (default: off)",
                 "how many to print (default: 1, or every beam)", "--top-p TOP_P (default: off)",
                 "--max-new-tokens MAX_NEW_TOKENS (default: 200)", "--draft-tokens K tokens the draft "
                 "proposes in its first round;", "at a token the draft doubts (default: 4)", "--context-overflow {exact,chunk,slide}",
                 "-m MODEL, --model MODEL", "npgpt generate --prompt 'To be' --num-beams 4 --max-new-tokens 30"):
        assert text in flat, text
    _, train_help, _ = run(capsys, "train", "--help")
    assert "(default 4)" in train_help and "(default: 4)" not in train_help      # train's own wording


# ------------------------------------------------------ errors name the flag, first
NEW_NAMES = ("stop_strings", "logit_bias", "draft_model", "num_draft_tokens", "context_overflow")


@pytest.mark.parametrize("argv, needles", [
    (["--logit-bias", "e:5"], ["argument --logit-bias: expected ID=BIAS", "'e:5'"]),
    (["--logit-bias", "5=much"], ["argument --logit-bias: '5=much': the bias 'much' is not a number"]),
    (["--logit-bias", "5=inf"], ["argument --logit-bias: '5=inf': the bias must be a finite number"]),
    (["--logit-bias", "5=nan"], ["the bias must be a finite number"]),
    (["--logit-bias", "99=1"], ["--logit-bias '99=1': token id 99 is out of range", "0 to"]),
    (["--logit-bias", "RO=1"], ["--logit-bias 'RO=1': the model's tokenizer encodes 'RO' to 2 tokens, not one"]),
    (["--logit-bias", "Z=1"], ["--logit-bias 'Z=1': cannot encode 'Z'"]),
    (["--draft-tokens", "2"], ["--draft-tokens only changes speculative decoding; add --draft MODEL"]),
    (["--draft", "no-such-model"], ["--draft: no file or folder 'no-such-model'"]),
    (["--draft", BUNDLED], ["--draft 'shakespeare-char': its tokenizer (CharTokenizer of 65 tokens) is not "
                            "the model's (CharTokenizer of", "must share the model's tokenizer"]),
    (["--draft", BUNDLED, "--draft-tokens", "0"], ["argument --draft-tokens: must be a positive integer, got 0"]),
    (["--stop", ""], ["--stop must be a non-empty string"]),
    (["--context-overflow", "fast"], ["argument --context-overflow: invalid choice: 'fast'"]),
])
def test_new_options_are_checked_before_anything_runs(capsys, monkeypatch, model_path, argv, needles):
    def work(*args, **kwargs):
        raise AssertionError(f"generate {argv} started generating")

    monkeypatch.setattr(generate_module, "stream", work)
    monkeypatch.setattr(generate_module, "generate", work)
    code, out, err = run(capsys, "generate", "--model", model_path, "--prompt", "ROMEO:", "-n", "3", *argv)
    assert_one_line_error(code, out, err, "npgpt generate: error:", *needles)
    assert not any(re.search(rf"\b{name}\b", err) for name in NEW_NAMES), err


def test_a_draft_with_other_tokens_of_the_same_number_is_refused(capsys, tmp_path, model_path):
    model = npgpt.load(model_path)
    chars = model.tokenizer.decode(list(range(model.config.vocab_size)))
    other = npgpt.GPT(model.config, seed=1)
    other.tokenizer = npgpt.CharTokenizer(chars[::-1])       # the same characters, other ids
    other.save(str(tmp_path / "reversed.safetensors"))
    code, out, err = run(capsys, "generate", "-m", model_path, "--draft", str(tmp_path / "reversed.safetensors"))
    assert_one_line_error(code, out, err, "--draft", "its tokenizer gives other ids to its tokens than the model's")


def test_bias_pairs_split_at_the_last_equals_sign():
    assert _bias_pair("10=-2.5") == ("10", -2.5, "10=-2.5")
    assert _bias_pair("==5") == ("=", 5.0, "==5")
    assert _bias_pair(" the=1e2") == (" the", 100.0, " the=1e2")


def test_logit_bias_keys_are_ids_or_one_token_texts(shakespeare):
    e, R = shakespeare.tokenizer.encode("eR")
    pairs = [_bias_pair(t) for t in ("e=-5", "5=2", "R=1", "R=3")]
    assert _logit_bias(pairs, shakespeare) == {e: -5.0, 5: 2.0, R: 3.0}     # digits: an id; the last wins
    assert _logit_bias(None, shakespeare) is None


# ----------------------------------------------------------- the options at work
def test_logit_bias_by_text_and_by_id_ban_a_character(capsys, shakespeare):
    """Depends on GenerationConfig.logit_bias being applied by generate/stream."""
    e = shakespeare.tokenizer.encode("e")[0]
    expected, _ = library_text(shakespeare, "ROMEO:", max_new_tokens=60, logit_bias={e: -100.0})
    by_text = run(capsys, "generate", "-p", "ROMEO:", "-n", "60", "--logit-bias", "e=-100")
    by_id = run(capsys, "generate", "-p", "ROMEO:", "-n", "60", "--logit-bias", f"{e}=-100")
    assert by_text[0] == by_id[0] == 0 and by_text[1] == by_id[1] == expected + "\n"
    assert "e" not in by_text[1][len("ROMEO:"):] and len(by_text[1]) == len("ROMEO:") + 60 + 1


def test_stop_ends_the_output_with_the_stop_string(capsys, shakespeare):
    """Depends on stop_strings in stream(). Greedy, the model writes 'ROMEO:\\nI will not so soon ...'."""
    code, out, err = run(capsys, "generate", "-p", "ROMEO:", "-n", "100", "--stop", "soon")
    expected, lib = library_text(shakespeare, "ROMEO:", max_new_tokens=100, stop_strings=("soon",))
    assert code == 0 and out == expected + "\n" == "ROMEO:\nI will not so soon\n", (out, err)
    assert summary(err)[0] == int(lib.num_new_tokens[0]) == len("\nI will not so soon")


def test_the_first_stop_string_met_ends_the_output(capsys):
    """Depends on stop_strings in stream()."""
    code, out, _ = run(capsys, "generate", "-p", "ROMEO:", "-n", "100", "--stop", "seat", "--stop", "not")
    assert code == 0 and out == "ROMEO:\nI will not\n"


def test_stop_ends_each_sample(capsys):
    """Depends on stop_strings in generate() for several sequences."""
    code, out, _ = run(capsys, "generate", "-p", "ROMEO:", "-n", "200", "--do-sample", "--seed", "5",
                       "--num-return-sequences", "3", "--stop", " ")
    texts = out.split("\n--- sample ")
    assert code == 0 and len(texts) == 3
    for text in texts:
        new = text.split("ROMEO:", 1)[1].rstrip("\n")
        assert new.endswith(" ") and new.count(" ") == 1, text


def test_draft_by_the_model_itself_keeps_the_output_and_reports_acceptance(capsys, shakespeare):
    """Depends on npgpt.speculative (generate with draft_model)."""
    code, out, err = run(capsys, "generate", "-p", "ROMEO:", "-n", "40", "--draft", BUNDLED, "--draft-tokens", "3")
    expected, lib = library_text(shakespeare, "ROMEO:", max_new_tokens=40, draft_model=shakespeare,
                                 num_draft_tokens=3)
    assert code == 0 and out == expected + "\n", err
    assert summary(err) == (40, "", f"; the draft's tokens accepted: {lib.acceptance_rate:.0%}")
    assert 0.9 <= lib.acceptance_rate <= 1.0       # the draft is the model: greedy, it agrees


def test_several_drafted_samples_report_the_acceptance_rate(capsys, model_path):
    """Depends on npgpt.speculative (several sequences)."""
    argv = ["-p", "ROMEO:", "-n", "10", "--do-sample", "--seed", "2", "--num-return-sequences", "2"]
    code, out, err = run(capsys, "generate", "-m", model_path, *argv, "--draft", model_path)
    tokens, detail, note = summary(err)
    assert code == 0 and out.count("--- sample") == 2 and (tokens, detail) == (20, " (2 sequences)")
    assert re.fullmatch(r"; the draft's tokens accepted: \d+%", note), note


def test_the_bundled_draft_model_samples_as_the_library(capsys):
    """Depends on the bundled shakespeare-char-draft and npgpt.speculative."""
    argv = ["generate", "-p", "JULIET:", "-n", "50", "--do-sample", "--seed", "3", "--draft", "shakespeare-char-draft"]
    code, out, err = run(capsys, *argv)
    model, draft = npgpt.load(BUNDLED), npgpt.load("shakespeare-char-draft")
    expected, lib = library_text(model, "JULIET:", max_new_tokens=50, do_sample=True, seed=3, draft_model=draft)
    assert code == 0 and out == expected + "\n", err
    assert summary(err)[2] == f"; the draft's tokens accepted: {lib.acceptance_rate:.0%}"


def test_draft_tokens_show_as_the_callback_reports_them_then_the_final_text(capsys, monkeypatch, shakespeare):
    """The --draft path on its own: generate()'s callback streams, its sequences are the truth."""
    ids = shakespeare.tokenizer.encode("ROMEO:\nAy")
    shown_while_running = []

    def speculative(model, prompt, config, callback=None):
        assert config.draft_model is not None and config.num_draft_tokens == 2
        for step, token in enumerate(ids[6:8]):          # '\n', 'A': the callback shows them
            callback(step, np.array([token]))
        shown_while_running.append(capsys.readouterr().out)
        return generate_module.GenerateOutput(np.array([ids]), np.zeros(1), np.array([3]), acceptance_rate=0.5)

    monkeypatch.setattr(generate_module, "generate", speculative)
    code, out, err = run(capsys, "generate", "-p", "ROMEO:", "-n", "3", "--draft", BUNDLED, "--draft-tokens", "2")
    assert code == 0 and shown_while_running == ["ROMEO:\nA"] and out == "y\n"
    assert summary(err) == (3, "", "; the draft's tokens accepted: 50%")


def test_context_overflow_chunk_runs_as_the_library(capsys, monkeypatch, shakespeare):
    """Depends on context_overflow="chunk" in stream(). 140 new tokens overflow the 128 context."""
    real_stream, modes = generate_module.stream, []

    def stream(model, ids, config, **kwargs):
        modes.append(config.context_overflow)
        return real_stream(model, ids, config, **kwargs)

    monkeypatch.setattr(generate_module, "stream", stream)
    code, out, err = run(capsys, "generate", "-p", "ROMEO:", "-n", "140", "--context-overflow", "chunk")
    expected, _ = library_text(shakespeare, "ROMEO:", max_new_tokens=140, context_overflow="chunk")
    assert code == 0 and out == expected + "\n" and modes == ["chunk"], err
    assert summary(err)[0] == 140
    run(capsys, "generate", "-p", "ROMEO:", "-n", "1")
    assert modes == ["chunk", "exact"]                        # the default


# ------------------------------------------------------------------ the seed
def test_a_picked_seed_is_printed_and_repeats_the_sample(capsys, model_path):
    argv = ["generate", "-m", model_path, "-p", "ROMEO:", "-n", "30", "--do-sample", "--top-k", "20"]
    code, first, err = run(capsys, *argv)
    match = SEED.match(err.splitlines()[0])
    assert code == 0 and match and match.group(1) == match.group(2), err
    seed = match.group(1)
    code, again, err = run(capsys, *argv, "--seed", seed)
    assert code == 0 and again == first and not SEED.match(err.splitlines()[0])
    others = {run(capsys, *argv)[1] for _ in range(3)}       # fresh seeds: other samples
    assert len(others | {first}) > 1


@pytest.mark.parametrize("extra", [["--num-return-sequences", "3"], ["--num-beams", "2", "--num-return-sequences", "2"]])
def test_a_picked_seed_repeats_several_samples(capsys, model_path, extra):
    argv = ["generate", "-m", model_path, "-p", "ROMEO:", "-n", "8", "--do-sample", *extra]
    code, first, err = run(capsys, *argv)
    seed = SEED.match(err.splitlines()[0]).group(1)
    assert code == 0 and run(capsys, *argv, "--seed", seed)[1] == first


@pytest.mark.parametrize("extra", [[], ["--seed", "4", "--do-sample"], ["--num-beams", "2"]])
def test_no_seed_line_when_greedy_or_given(capsys, model_path, extra):
    code, _, err = run(capsys, "generate", "-m", model_path, "-n", "4", *extra)
    assert code == 0 and "seed" not in err and len(err.splitlines()) == 1


def test_the_seed_line_waits_for_the_run_s_own_checks(capsys, monkeypatch, model_path):
    def refused(*args, **kwargs):                # the library refuses the run at its start
        raise ValueError("top_p must be in (0, 1], got 2")
        yield

    monkeypatch.setattr(generate_module, "stream", refused)
    code, out, err = run(capsys, "generate", "-m", model_path, "--do-sample")
    assert_one_line_error(code, out, err, "npgpt generate: error: --top-p must be in (0, 1], got 2")


# ---------------------------------------------------------------- the summary
@pytest.mark.parametrize("extra, tokens, detail", [
    ([], 12, ""),
    (["--do-sample", "--seed", "1", "--num-return-sequences", "3"], 36, " (3 sequences)"),
    (["--num-beams", "3"], 36, " (12 steps of 3 beams)"),
])
def test_a_summary_line_ends_generate(capsys, model_path, extra, tokens, detail):
    code, _, err = run(capsys, "generate", "-m", model_path, "-n", "12", *extra)
    match = SUMMARY.match(err.splitlines()[-1])
    assert code == 0 and match, err
    assert (int(match.group(1)), match.group(2), match.group(6)) == (tokens, detail, "")
    if match.group(5) is not None:           # seconds shown to 0.005, the rate to 0.05
        rate, seconds = float(match.group(5).replace(",", "")), float(match.group(3))
        assert abs(rate * seconds - tokens) <= 0.0051 * rate + 0.01 * tokens


def test_the_summary_counts_new_tokens_up_to_eos(capsys, model_path):
    model = npgpt.load(model_path)
    _, lib = library_text(model, "ROMEO:", max_new_tokens=30, eos_token_id=0)
    code, _, err = run(capsys, "generate", "-m", model_path, "-p", "ROMEO:", "-n", "30", "--eos-token-id", "0")
    assert code == 0 and summary(err)[0] == int(lib.num_new_tokens[0])


def test_no_summary_into_a_closed_pipe(monkeypatch, model_path):
    """The candidates fit stdout's buffer, so the pipe's end shows only at the last flush:
    then no summary, though stderr is a terminal."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    closed, terminal = open(write_end, "w", buffering=1 << 16), Terminal()
    monkeypatch.setattr(sys, "stdout", closed)
    monkeypatch.setattr(sys, "stderr", terminal)
    try:
        code = main(["generate", "-m", model_path, "-n", "4", "--num-beams", "2"])
    finally:
        monkeypatch.undo()
        closed.close()                        # main pointed it at the null device
    shown = terminal.getvalue()
    assert code == 141 and "beam search, 2 beams: token 3/4" in shown
    assert shown.endswith(" \r") and " s (" not in shown     # the counter rubbed out, and no more


def test_a_pipe_s_closed_reading_end_is_seen():
    read_end, write_end = os.pipe()
    with open(write_end, "w") as stream:
        assert not reader_gone(stream)
        os.close(read_end)
        assert reader_gone(stream)
    assert not reader_gone(io.StringIO())


def _process(tmp_path, stdout, *argv):
    return subprocess.run([sys.executable, "-m", "npgpt", "generate", *argv], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=TIMEOUT, cwd=tmp_path)


def test_notes_go_where_someone_reads_them(tmp_path, model_path):
    """stdout into a file: the seed and the summary on stderr; stdout into a pipe with stderr
    no terminal (a script reading both): stderr stays quiet."""
    argv = ("-m", model_path, "-n", "6", "--do-sample")
    with open(tmp_path / "out.txt", "w") as out:
        to_file = _process(tmp_path, out, *argv)
    assert to_file.returncode == 0 and (tmp_path / "out.txt").read_text().startswith("\n")
    lines = to_file.stderr.splitlines()
    assert len(lines) == 2 and SEED.match(lines[0]) and SUMMARY.match(lines[1])
    to_pipe = _process(tmp_path, subprocess.PIPE, *argv)
    assert to_pipe.returncode == 0 and to_pipe.stderr == "" and len(to_pipe.stdout) > 1


# --------------------------------------------------------------- progress
def test_several_samples_show_a_counter_on_a_terminal(capsys, monkeypatch, model_path):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code, out, _ = run(capsys, "generate", "-m", model_path, "-n", "5", "--do-sample", "--seed", "2",
                       "--num-return-sequences", "2")
    err = terminal.getvalue()
    assert code == 0 and out.count("--- sample") == 2
    for i in range(1, 6):
        assert f"\rsampling 2 sequences: token {i}/5" in err
    counter_erased = err.rsplit("\r", 1)
    assert counter_erased[0].endswith(" ") and SUMMARY.match(counter_erased[1].rstrip("\n"))


def test_no_counter_when_stderr_is_no_terminal(capsys, model_path):
    code, _, err = run(capsys, "generate", "-m", model_path, "-n", "5", "--do-sample", "--num-return-sequences", "2")
    assert code == 0 and "\r" not in err


def test_beam_search_shows_its_best_beam_in_place_on_a_terminal(capsys, monkeypatch, model_path):
    """Depends on stream() yielding the best running beam (num_beams > 1)."""
    argv = ["generate", "-m", model_path, "-p", "ROMEO:", "-n", "6", "--num-beams", "3"]
    _, plain, _ = run(capsys, *argv)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    code = main(argv)
    monkeypatch.undo()
    shown = terminal.getvalue()
    live, final = shown.rsplit("\r", 1)
    model = npgpt.load(model_path)
    best = model.tokenizer.decode(npgpt.generate(model, model.tokenizer.encode("ROMEO:"), max_new_tokens=6,
                                                 num_beams=3).sequences[0].tolist())
    assert code == 0 and final == plain                  # the line rubbed out, then the candidates
    assert live.startswith("\rbest of 3 beams: ROMEO:") and live.count("\r") >= 6
    assert ("best of 3 beams: " + best.replace("\n", "\\n")) in live


# ------------------------------------------------------------------- the README
def _readme_blocks():
    """The two outputs the README's "Why greedy decoding loops" paragraph shows."""
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md"),
              encoding="utf-8") as f:
        text = f.read().split("**Why greedy decoding loops.**")[1].split("\n## ")[0]
    return re.findall(r"```text\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("index, extra", [(0, []), (1, ["--no-repeat-ngram-size", "6"])])
def test_the_readme_shows_real_greedy_output(capsys, index, extra):
    """The README's blocks hold 200 new characters; their first 120 (which fit the context, so
    run quickly) are what the command prints."""
    block = _readme_blocks()[index]
    assert block.startswith("ROMEO:") and len(block) == len("ROMEO:") + 200 + 1
    code, out, _ = run(capsys, "generate", "--prompt", "ROMEO:", "--max-new-tokens", "120", *extra)
    assert code == 0 and block.startswith(out[:-1]) and len(out) == len("ROMEO:") + 120 + 1
