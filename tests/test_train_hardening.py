"""Interrupted and broken training runs: nothing escapes (every failure is one line, exit
code 2 or 130 on the command line), nothing is lost (interrupts save the last consistent
state, which resumes bit-identically; no temporaries, no NaN model, no second run in the
same folder)."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import npgpt
import npgpt.train
from npgpt.train import (AdamW, TrainConfig, TrainingError, TrainingInterrupted, TrainState,
                         evaluate, load_checkpoint, save_checkpoint, split_corpus, train,
                         train_step, training_memory)

from helpers import tiny_config
from test_cli import run
from test_train import Countdown, assert_same_state, call_first, in_adamw, sigint

TEXT = "ROMEO: But soft, what light through yonder window breaks?\n" * 30
TINY = ["--layers", "1", "--heads", "2", "--d-model", "8", "--context", "8", "--batch-size", "2",
        "--eval-iters", "1", "--warmup", "1"]
TIMEOUT = 120


def new_state(steps=8, **changes):
    tc = TrainConfig(**{**dict(batch_size=2, steps=steps, eval_interval=3, eval_iters=2, warmup=2), **changes})
    return TrainState.new(npgpt.GPT(tiny_config(dropout=0.1), seed=0), tc)


@pytest.fixture(scope="module")
def data():
    return split_corpus(np.random.default_rng(0).integers(0, 17, 400))


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """The unbroken run every interrupted one must reproduce, and its best model."""
    out = tmp_path_factory.mktemp("straight")
    return train(new_state(), *data, out_dir=str(out)), npgpt.load(str(out / "model.safetensors"))


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text(TEXT)
    return str(path)


def one_line_error(code, err, *words, started=False):
    """Exit code 2 and one line of error: all that is printed, or, once the run has
    ``started`` (its progress printed), the last line."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert started or len(lines) == 1, err
    assert lines[-1].startswith("npgpt train: error: ") and "Traceback" not in err, err
    for word in words:
        assert word in lines[-1], (word, err)


# ----------------------------------------------------------------------------- interrupts
def raise_interrupt():
    raise KeyboardInterrupt


def raise_in_on_step(patch, at):
    return Countdown(at, raise_interrupt)


def raise_in_backward(patch, at):
    import npgpt.model

    call_first(patch, npgpt.model, "gpt_backward", Countdown(at, raise_interrupt))


def raise_in_adamw(patch, at):
    in_adamw(patch, at, raise_interrupt)


def raise_in_evaluation(patch, at):
    call_first(patch, npgpt.train.loop, "estimate_loss", Countdown(at, raise_interrupt))


def raise_in_checkpoint_save(patch, at):
    call_first(patch, npgpt.train.loop, "save_checkpoint", Countdown(at, raise_interrupt))


@pytest.mark.parametrize("where, at, saved_step", [
    (raise_in_on_step, 3, 3),            # after step 3, its evaluation not yet done
    (raise_in_backward, 5, 4),           # rewound to the start of step 5
    (raise_in_adamw, 5, None),           # half-updated: not saved, the step-3 checkpoint stays
    (raise_in_evaluation, 4, 6),         # the evaluation at step 6 cut short: redone on resume
    (raise_in_checkpoint_save, 2, 6),    # the save of that evaluation cut short
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_a_keyboard_interrupt_raised_by_code_saves_only_a_consistent_state(
        tmp_path, monkeypatch, data, straight, where, at, saved_step):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        on_step = where(patch, at)
        with pytest.raises(TrainingInterrupted) as caught:
            train(new_state(), *data, out_dir=str(out), on_step=on_step)
    assert caught.value.step == saved_step
    assert sorted(os.listdir(out)) == ["ckpt.npz", "model.safetensors"]     # no lock, no temporary
    resumed = train(load_checkpoint(str(out / "ckpt.npz")), *data, out_dir=str(out))
    assert_same_state(resumed, straight[0])
    best = npgpt.load(str(out / "model.safetensors"))
    assert all(np.array_equal(best.params[k], v) for k, v in straight[1].params.items())


def test_an_interrupt_in_the_middle_of_the_first_update_saves_nothing(tmp_path, monkeypatch, data):
    with monkeypatch.context() as patch:
        raise_in_adamw(patch, 2)
        with pytest.raises(TrainingInterrupted, match="middle of an AdamW update") as caught:
            train(new_state(), *data, out_dir=str(tmp_path))
    assert caught.value.step is None and caught.value.saved == ()
    assert os.listdir(tmp_path) == []


def test_sigint_is_served_at_the_next_step_boundary_and_the_handler_restored(data):
    previous = signal.getsignal(signal.SIGINT)
    seen = []

    def on_step(info):
        seen.append(info["step"])
        if info["step"] == 2:
            sigint()
            assert signal.getsignal(signal.SIGINT) is not previous       # ours, while training

    with pytest.raises(TrainingInterrupted) as caught:
        train(new_state(), *data, on_step=on_step)
    assert seen == [1, 2] and caught.value.step == 2 and caught.value.saved == ()
    assert signal.getsignal(signal.SIGINT) is previous
    with np.errstate(all="ignore"), pytest.raises(TrainingError):
        train(new_state(lr=1e10, min_lr=0.0, warmup=0), *data)
    assert signal.getsignal(signal.SIGINT) is previous


def test_a_second_sigint_while_saving_stops_at_once_and_leaves_no_temporary(tmp_path, monkeypatch, data):
    with monkeypatch.context() as patch:
        call_first(patch, npgpt.train.loop, "save_checkpoint", Countdown(1))   # the save on the way out
        with pytest.raises(KeyboardInterrupt) as caught:
            train(new_state(), *data, out_dir=str(tmp_path), on_step=Countdown(2))
    assert not isinstance(caught.value, TrainingInterrupted)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert os.listdir(tmp_path) == ["model.safetensors"]          # written just before; no .lock


def test_sigint_when_ignored_is_left_ignored(data):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        state = train(new_state(steps=4), *data, on_step=Countdown(2))
        assert state.step == 4 and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_train_runs_outside_the_main_thread(tmp_path, data, straight):
    result, errors = [], []

    def work():
        try:
            result.append(train(new_state(), *data, out_dir=str(tmp_path)))
        except BaseException as err:      # pragma: no cover - reported below
            errors.append(err)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(TIMEOUT)
    assert not errors and result
    assert_same_state(result[0], straight[0])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_run_interrupted_before_its_first_evaluation_leaves_a_loadable_model(tmp_path, data):
    with pytest.raises(TrainingInterrupted) as caught:
        train(new_state(), *data, out_dir=str(tmp_path), on_step=Countdown(2))
    path = str(tmp_path / "model.safetensors")
    assert path in caught.value.saved
    model, state = npgpt.load(path), load_checkpoint(str(tmp_path / "ckpt.npz"))
    assert state.step == 2 and state.best_val is None
    assert all(np.array_equal(model.params[k], v) for k, v in state.model.params.items())
    stopped = train(new_state(), *data, out_dir=str(tmp_path / "paused"), stop_at=1)
    assert stopped.best_val is None and (tmp_path / "paused" / "model.safetensors").exists()


def test_cli_ctrl_c_exits_130_saying_what_it_saved(tmp_path, text_file):
    script = textwrap.dedent(f"""
        import os, signal, sys
        import npgpt.cli
        def on_step(info):
            if info["step"] == 3:
                os.kill(os.getpid(), signal.SIGINT)
        import npgpt.train
        real = npgpt.train.train
        npgpt.train.train = lambda *a, **k: real(*a, **{{**k, "on_step": on_step}})
        sys.exit(npgpt.cli.main(["train", "--data", {text_file!r}, "--out", {str(tmp_path / "run")!r},
                                 "--steps", "20", "--eval-interval", "10", *{TINY!r}]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 130, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted at step 3; saved") and "not yet evaluated" in last
    assert npgpt.load(str(tmp_path / "run" / "model.safetensors")).tokenizer is not None


# ----------------------------------------------------------------------------- temporaries, modes
def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(TIMEOUT)
    return child.pid


def test_stale_temporaries_of_dead_writers_are_removed_and_nothing_else(tmp_path, data):
    gone, old = dead_pid(), 1_000_000_000
    names = {f".ckpt.npz.{gone}.0123456789ab.part": False,         # its writer is gone: removed
             f".model.safetensors.{gone}.0123456789ab.part": False,
             f".ckpt.npz.{os.getpid()}.0123456789ab.part": True,   # a live writer's: kept
             ".tmp-abcd1234.npz": False,                          # an old version's, an hour old
             ".tmp-young123.npz": True,                           # ... a fresh one: kept
             ".tmp-notes.npz": True, "notes.txt": True, ".ckpt.npz.x.0123456789ab.part": True}
    for name in names:
        (tmp_path / name).write_text("x")
    os.utime(tmp_path / ".tmp-abcd1234.npz", (old, old))
    train(new_state(steps=3), *data, out_dir=str(tmp_path))
    left = set(os.listdir(tmp_path))
    assert left == {n for n, kept in names.items() if kept} | {"ckpt.npz", "model.safetensors"}


def test_a_save_killed_midway_leaves_a_temporary_that_the_next_run_removes(tmp_path, data):
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        import npgpt
        from npgpt.train import TrainConfig, TrainState, save_checkpoint
        from helpers import tiny_config
        def killed(f, **arrays):
            f.write(b"PK partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        np.savez = killed
        save_checkpoint({str(tmp_path / "ckpt.npz")!r}, TrainState.new(npgpt.GPT(tiny_config()), TrainConfig()))
    """)
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.abspath(__file__))}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=TIMEOUT, env=env)
    assert done.returncode == -signal.SIGKILL, done.stderr
    leaked = [n for n in os.listdir(tmp_path) if n.endswith(".part")]
    assert len(leaked) == 1 and leaked[0].startswith(".ckpt.npz.")
    train(new_state(steps=3), *data, out_dir=str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz", "model.safetensors"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_checkpoint_and_model_have_the_mode_of_any_new_file(tmp_path, data):
    previous = os.umask(0o027)
    try:
        train(new_state(steps=3), *data, out_dir=str(tmp_path))
    finally:
        os.umask(previous)
    for name in ("ckpt.npz", "model.safetensors"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o640, name


# ----------------------------------------------------------------------------- one run a folder
def test_a_second_run_on_the_same_folder_is_refused_while_the_first_runs(tmp_path, data):
    out = str(tmp_path / "run")
    refused = []

    def second(info):
        if info["step"] == 1:
            with pytest.raises(TrainingError, match="another training run .* is using the output folder") as err:
                train(new_state(), *data, out_dir=out)
            refused.append(str(err.value))

    state = train(new_state(), *data, out_dir=out, on_step=second)
    assert refused and repr(out) in refused[0] and f"process {os.getpid()}" in refused[0]
    assert state.step == 8 and sorted(os.listdir(out)) == ["ckpt.npz", "model.safetensors"]
    train(new_state(steps=9), *data, out_dir=out, overwrite=True)   # free again once it ended


def test_a_second_npgpt_train_process_is_refused_with_one_line(tmp_path, data, text_file):
    out = str(tmp_path / "run")
    done = []

    def second(info):
        if info["step"] == 1:
            done.append(subprocess.run([sys.executable, "-m", "npgpt.cli", "train", "--data", text_file,
                                        "--out", out, "--steps", "2", *TINY],
                                       capture_output=True, text=True, timeout=TIMEOUT))

    train(new_state(steps=2), *data, out_dir=out, on_step=second)
    one_line_error(done[0].returncode, done[0].stderr, "is using the output folder", repr(out))


def test_without_fcntl_the_lock_is_a_pid_file(tmp_path, monkeypatch, data):
    monkeypatch.setattr(npgpt.train.runs, "fcntl", None)
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(f"{dead_pid()}\n")                    # left by a run that died
    refused = []

    def second(info):
        assert (out / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(TrainingError, match="is using the output folder"):
            train(new_state(), *data, out_dir=str(out))
        refused.append(True)

    train(new_state(steps=2), *data, out_dir=str(out), on_step=second)
    assert refused and not (out / ".lock").exists()
    (out / ".lock").write_text("")                                    # being written just now
    with pytest.raises(TrainingError, match="another training run is using"):
        train(new_state(steps=2), *data, out_dir=str(out))


def test_an_output_folder_that_cannot_be_made_is_a_training_error(tmp_path, data):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainingError, match="cannot use the output folder"):
        train(new_state(), *data, out_dir=str(tmp_path / "file" / "run"))


# ----------------------------------------------------------------------------- non-finite
def test_a_diverging_run_stops_and_never_saves_a_non_finite_state(tmp_path, data):
    state = new_state(steps=60, lr=1e3, min_lr=0.0, warmup=0, eval_interval=2)
    with np.errstate(all="ignore"), pytest.raises(TrainingError) as caught:
        train(state, *data, out_dir=str(tmp_path))
    message = str(caught.value)
    assert "diverged at step" in message and "--lr" in message and "\n" not in message
    ckpt = load_checkpoint(str(tmp_path / "ckpt.npz"))
    assert ckpt.step < state.step + 1 and np.isfinite(ckpt.best_val)
    for arrays in (ckpt.model.params, ckpt.optimizer.m, ckpt.optimizer.v,
                   npgpt.load(str(tmp_path / "model.safetensors")).params):
        assert all(np.isfinite(v).all() for v in arrays.values())


def test_a_non_finite_loss_leaves_the_parameters_as_they_were(data):
    state = new_state()
    state.model.params["ln_final.weight"][0] = np.nan
    before = {k: v.copy() for k, v in state.model.params.items()}
    x, y = npgpt.train.get_batch(data[0], 2, 12, np.random.default_rng(0))
    with np.errstate(all="ignore"), pytest.raises(TrainingError, match="diverged at step 1: the loss is nan"):
        train_step(state, x, y)
    assert state.step == 0 and state.optimizer.t == 0
    assert all(np.array_equal(state.model.params[k], v, equal_nan=True) for k, v in before.items())


def test_evaluate_never_records_a_nan_loss_as_best(tmp_path, data):
    state = new_state()
    state.model.params["ln_final.weight"][:] = np.nan
    with np.errstate(all="ignore"), pytest.raises(TrainingError, match="not finite"):
        evaluate(state, *data, out_dir=str(tmp_path))
    assert state.best_val is None and state.history == [] and os.listdir(tmp_path) == []


def test_save_checkpoint_refuses_a_non_finite_state_and_keeps_the_file(tmp_path):
    path = str(tmp_path / "ckpt.npz")
    state = new_state()
    save_checkpoint(path, state)
    state.optimizer.v["ln_final.bias"][0] = np.inf
    with pytest.raises(TrainingError, match="AdamW moment v of 'ln_final.bias' is not finite"):
        save_checkpoint(path, state)
    assert np.isfinite(load_checkpoint(path).optimizer.v["ln_final.bias"]).all()


def test_cli_divergence_is_one_line_and_exit_2(capsys, tmp_path, text_file):
    code, out, err = run(capsys, "train", "--data", text_file, "--out", str(tmp_path / "run"),
                         "--lr", "1e10", "--steps", "30", *TINY)
    one_line_error(code, err, "diverged", "--lr", started=True)
    assert not (tmp_path / "run" / "model.safetensors").exists()


# ----------------------------------------------------------------------------- flags
@pytest.mark.parametrize("steps", ["0", "-5"])
def test_cli_refuses_steps_below_one(capsys, text_file, steps):
    code, _, err = run(capsys, "train", "--data", text_file, "--steps", steps)
    one_line_error(code, err, "--steps", steps)


def test_cli_refuses_a_file_as_out(capsys, text_file):
    code, _, err = run(capsys, "train", "--data", text_file, "--out", text_file)
    one_line_error(code, err, "--out", "is a file")


@pytest.fixture
def finished_run(capsys, tmp_path, text_file):
    out = str(tmp_path / "run")
    code, _, err = run(capsys, "train", "--data", text_file, "--out", out, "--steps", "4",
                       "--eval-interval", "2", *TINY)
    assert code == 0, err
    return out


@pytest.mark.parametrize("flag, value, saved", [
    ("--layers", "9", "1"), ("--lr", "5", "0.001"), ("--d-model", "16", "8"), ("--dropout", "0.5", "0.0"),
    ("--batch-size", "3", "2"), ("--seed", "1", "1337"), ("--gelu", "tanh", "exact"),
    ("--warmup", "0", "1"), ("--eval-interval", "3", "2"),
])
def test_resume_refuses_flags_that_contradict_the_checkpoint(capsys, finished_run, text_file, flag, value, saved):
    code, _, err = run(capsys, "train", "--data", text_file, "--out", finished_run, "--resume", flag, value)
    one_line_error(code, err, f"{flag} ", value, f"checkpoint's {saved}")


def test_resume_accepts_flags_equal_to_the_checkpoint_and_a_new_step_count(capsys, finished_run, text_file):
    code, _, err = run(capsys, "train", "--data", text_file, "--out", finished_run, "--resume", "--steps", "6",
                       *TINY, "--lr", "0.001", "--eval-interval", "2")
    assert code == 0, err
    assert load_checkpoint(os.path.join(finished_run, "ckpt.npz")).step == 6
    code, _, err = run(capsys, "train", "--data", text_file, "--out", finished_run, "--resume", "--tie-embeddings")
    one_line_error(code, err, "--tie-embeddings True", "checkpoint's False")
    code, _, err = run(capsys, "train", "--data", text_file, "--out", finished_run, "--resume", "--steps", "5")
    one_line_error(code, err, "--steps 5", "6 steps")


def test_a_run_that_never_leaves_warm_up_says_so(capsys, tmp_path, text_file):
    code, _, err = run(capsys, "train", "--data", text_file, "--out", str(tmp_path / "a"), "--steps", "3",
                       *TINY[:-2], "--eval-interval", "3")
    assert code == 0, err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "--steps 3" in warning[0] and "--warmup 100" in warning[0]
    code, _, err = run(capsys, "train", "--data", text_file, "--out", str(tmp_path / "b"), "--steps", "3",
                       *TINY, "--eval-interval", "3")
    assert code == 0 and "warning" not in err


def test_the_command_line_defaults_are_train_config_s():
    import dataclasses

    from npgpt.cli.train import _OPTIMISER_FLAGS

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert all(defaults[field] == value for field, value in _OPTIMISER_FLAGS.values())


def test_help_states_the_defaults(capsys):
    code, out, _ = run(capsys, "train", "--help")
    out = " ".join(out.split())
    for text in ("(default 4)", "(default 128)", "(default 0.001)", "(default 100)", "(default 2000",
                 "(default 1337)", "(default off)", "warning"):
        assert text in out, text


# ----------------------------------------------------------------------------- damaged checkpoints
def npz(entries):
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    return buffer.getvalue()


def with_meta(meta, arrays):
    return npz({"meta": np.array(json.dumps(meta)), **arrays})


def put(key, value):
    return lambda meta, arrays, raw: with_meta({**meta, key: value}, arrays)


def put_in(part, key, value):
    return lambda meta, arrays, raw: with_meta({**meta, part: {**meta[part], key: value}}, arrays)


def set_array(name, make):
    return lambda meta, arrays, raw: with_meta(meta, {**arrays, name: make(arrays)})


def npy(meta, arrays, raw):
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3))
    return buffer.getvalue()


# name -> damage(meta, arrays, the file's bytes) -> the damaged file's bytes
DAMAGES = {
    "truncated": lambda meta, arrays, raw: raw[:len(raw) // 2],
    "truncated in its first bytes": lambda meta, arrays, raw: raw[:3],
    "bytes changed in an array": lambda meta, arrays, raw: raw[:len(raw) // 2] + b"\xff" * 8 + raw[len(raw) // 2 + 8:],
    "not a zip": lambda meta, arrays, raw: b"this is not a zip file at all",
    "empty": lambda meta, arrays, raw: b"",
    "an npy file": npy,
    "no meta": lambda meta, arrays, raw: npz(arrays),
    "meta not JSON": lambda meta, arrays, raw: npz({"meta": np.array("{step: 3"), **arrays}),
    "meta a number array": lambda meta, arrays, raw: npz({"meta": np.arange(3), **arrays}),
    "meta a JSON list": lambda meta, arrays, raw: npz({"meta": np.array("[1, 2]"), **arrays}),
    "wrong format": put("format", "npgpt-train-0"),
    "no rng": lambda meta, arrays, raw: with_meta({k: v for k, v in meta.items() if k != "rng"}, arrays),
    "step a string": put("step", "5"),
    "adam_t negative": put("adam_t", -1),
    "best_val a string": put("best_val", "low"),
    "best_val not finite": put("best_val", float("nan")),
    "history not records": put("history", [{"step": 2}]),
    "config unknown field": put_in("config", "n_embd", 8),
    "config inconsistent": put_in("config", "num_heads", 5),
    "config more layers than arrays": put_in("config", "num_layers", 10**9),
    "train_config bad lr": put_in("train_config", "lr", -1.0),
    "train_config bad seed": put_in("train_config", "seed", "x"),
    "train_config a list": put("train_config", [1, 2]),
    "rng garbage": put("rng", {"bit_generator": "MT19937", "state": 3}),
    "tokenizer garbage": put("tokenizer", {"type": "wordpiece"}),
    "decay unknown name": put("decay", ["no.such.weight"]),
    "array missing": lambda meta, arrays, raw: with_meta(meta, {k: v for k, v in arrays.items()
                                                               if k != "m/ln_final.bias"}),
    "array extra": set_array("param/extra", lambda a: np.zeros(3, np.float32)),
    "array wrong shape": set_array("v/ln_final.bias", lambda a: np.zeros(3, np.float32)),
    "array wrong dtype": set_array("m/ln_final.weight", lambda a: a["m/ln_final.weight"].astype(np.float64)),
    "arrays of ints": lambda meta, arrays, raw: with_meta(meta, {k: v.astype(np.int32) for k, v in arrays.items()}),
}


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    tok = npgpt.CharTokenizer.from_text(TEXT)
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=tok.vocab_size, context_length=8, d_model=8,
                                      num_heads=2, num_layers=1), seed=0)
    model.tokenizer = tok
    path = tmp_path_factory.mktemp("good") / "ckpt.npz"
    save_checkpoint(str(path), TrainState.new(model, TrainConfig(batch_size=2, steps=4, eval_iters=1)))
    return path.read_bytes()


def damaged(folder, good, damage):
    with np.load(io.BytesIO(good)) as f:
        meta, arrays = json.loads(str(f["meta"])), {k: f[k] for k in f.files if k != "meta"}
    path = folder / "ckpt.npz"
    path.write_bytes(DAMAGES[damage](meta, arrays, good))
    return path


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_checkpoint_is_one_clear_error(capsys, tmp_path, good_checkpoint, text_file, damage):
    path = damaged(tmp_path, good_checkpoint, damage)
    with pytest.raises(ValueError, match=f"cannot read training checkpoint {path}: ") as caught:
        load_checkpoint(str(path))
    assert "\n" not in str(caught.value)
    code, _, err = run(capsys, "train", "--data", text_file, "--out", str(tmp_path), "--resume")
    one_line_error(code, err, "--resume: cannot read training checkpoint")


def test_the_undamaged_checkpoint_resumes(capsys, tmp_path, good_checkpoint, text_file):
    (tmp_path / "ckpt.npz").write_bytes(good_checkpoint)
    code, out, err = run(capsys, "train", "--data", text_file, "--out", str(tmp_path), "--resume")
    assert code == 0 and "after 4 steps" in out, err


def test_a_folder_where_the_checkpoint_should_be(capsys, tmp_path, text_file):
    (tmp_path / "ckpt.npz").mkdir()
    code, _, err = run(capsys, "train", "--data", text_file, "--out", str(tmp_path), "--resume")
    one_line_error(code, err, "cannot read training checkpoint")


# ----------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("flag, value", [("--context", 10**9), ("--batch-size", 10**9),
                                         ("--d-model", 10**7), ("--layers", 10**9)])
def test_sizes_beyond_the_machine_are_refused_before_allocating(capsys, text_file, flag, value):
    if npgpt.cli.train._physical_memory() is None:
        pytest.skip("the system does not say how much memory it has")
    code, _, err = run(capsys, "train", "--data", text_file, flag, str(value))
    one_line_error(code, err, f"{flag} {value}", "memory")


def test_memory_error_while_training_is_one_line(capsys, monkeypatch, tmp_path, text_file):
    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(npgpt.train, "train", out_of_memory)
    code, _, err = run(capsys, "train", "--data", text_file, "--out", str(tmp_path), *TINY)
    one_line_error(code, err, "out of memory", "--batch-size")


def test_training_memory_counts_every_parameter():
    from npgpt.model import parameter_shapes

    for cfg in (tiny_config(), tiny_config(tie_embeddings=True, output_bias=False)):
        count = sum(int(np.prod(shape)) for shape in parameter_shapes(cfg).values())
        assert training_memory(cfg, batch_size=0) == 4 * count * 4
