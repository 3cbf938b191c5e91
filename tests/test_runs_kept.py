"""Nothing a user made is lost: a new training run never replaces another one, a model save
replaces only the model's own files, and a save or a picture never replaces a folder.

The rules: an ``--out`` folder that is absent, empty or holds only other files is used as it
is (a run writes ckpt.npz, model.safetensors and its lock beside those files); one that holds
a run is refused unless the state continues that run (``--resume``) or ``--overwrite`` is
given. save_gpt2 / save_hf replace a folder's model files (config, weights, tokenizer) and
keep every other entry exactly as it was. ``model.save(path)``, checkpoints and pictures
replace a file the caller named, and refuse a folder.
"""

import json
import os
import warnings

import numpy as np
import pytest

import npgpt
import npgpt.train
from npgpt.io import CheckpointError
from npgpt.io import files
from npgpt.train import (TrainConfig, TrainingError, TrainState, load_checkpoint, run_in_folder,
                         save_checkpoint, split_corpus, train)

from helpers import FIXTURES, has_module, run_cli, tiny_config

TEXT = "ROMEO: But soft, what light through yonder window breaks?\n" * 30
TINY = ["--layers", "1", "--heads", "2", "--d-model", "8", "--context", "8", "--batch-size", "2",
        "--eval-iters", "1", "--warmup", "1", "--eval-interval", "2"]


def snapshot(folder):
    """{name: bytes} of every file in ``folder`` (recursively), to prove nothing changed."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def one_line_error(code, err, *words):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, err)


# ----------------------------------------------------------------------------- npgpt train
@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "news.txt"
    path.write_text(TEXT)
    return str(path)


@pytest.fixture
def finished_run(capsys, tmp_path, text_file):
    out = str(tmp_path / "run2")
    code, _, err = run_cli(capsys, "train", "--data", text_file, "--out", out, "--steps", "4", *TINY)
    assert code == 0, err
    return out


def test_a_new_run_on_a_folder_holding_a_run_is_refused_and_changes_nothing(capsys, finished_run, text_file):
    before = snapshot(finished_run)
    code, _, err = run_cli(capsys, "train", "--data", text_file, "--out", finished_run, "--steps", "2", *TINY)
    one_line_error(code, err, f"--out {finished_run!r} already holds a training run", "step 4 of 4",
                   "--resume", "--overwrite")
    assert snapshot(finished_run) == before


def test_resume_continues_the_run_in_the_folder(capsys, finished_run, text_file):
    code, _, err = run_cli(capsys, "train", "--data", text_file, "--out", finished_run, "--resume",
                           "--steps", "6")
    assert code == 0, err
    assert load_checkpoint(os.path.join(finished_run, "ckpt.npz")).step == 6


def test_overwrite_replaces_the_run_s_files_and_keeps_the_user_s(capsys, finished_run, text_file):
    old_id = load_checkpoint(os.path.join(finished_run, "ckpt.npz")).run_id
    notes = os.path.join(finished_run, "notes.txt")
    with open(notes, "w") as f:
        f.write("lr 1e-3 looked best")
    code, _, err = run_cli(capsys, "train", "--data", text_file, "--out", finished_run, "--overwrite",
                           "--steps", "2", *TINY)
    assert code == 0, err
    state = load_checkpoint(os.path.join(finished_run, "ckpt.npz"))
    assert state.step == 2 and state.run_id != old_id
    assert sorted(os.listdir(finished_run)) == ["ckpt.npz", "model.safetensors", "notes.txt"]
    assert open(notes).read() == "lr 1e-3 looked best"


def test_resume_and_overwrite_together_are_refused(capsys, finished_run, text_file):
    before = snapshot(finished_run)
    code, _, err = run_cli(capsys, "train", "--data", text_file, "--out", finished_run, "--resume",
                           "--overwrite")
    one_line_error(code, err, "--resume", "--overwrite")
    assert snapshot(finished_run) == before


def test_a_folder_of_other_files_takes_a_run_beside_them(capsys, tmp_path, text_file):
    out = tmp_path / "project"
    (out / "data").mkdir(parents=True)
    (out / "README.md").write_text("mine")
    (out / "data" / "corpus.txt").write_text("words")
    before = snapshot(out)
    code, _, err = run_cli(capsys, "train", "--data", text_file, "--out", str(out), "--steps", "2", *TINY)
    assert code == 0, err
    after = snapshot(out)
    assert {k: after[k] for k in before} == before
    assert sorted(set(after) - set(before)) == ["ckpt.npz", "model.safetensors"]


def test_a_folder_holding_only_a_model_is_refused(capsys, tmp_path, text_file):
    out = tmp_path / "models"
    out.mkdir()
    npgpt.GPT(tiny_config(), seed=0).save(out / "model.safetensors")
    before = snapshot(out)
    code, _, err = run_cli(capsys, "train", "--data", text_file, "--out", str(out), "--steps", "2", *TINY)
    one_line_error(code, err, "a model.safetensors", "--overwrite")
    assert snapshot(out) == before


# ----------------------------------------------------------------------------- train()
def new_state(steps=4):
    tc = TrainConfig(batch_size=2, steps=steps, eval_interval=2, eval_iters=1, warmup=1)
    return TrainState.new(npgpt.GPT(tiny_config(), seed=0), tc)


@pytest.fixture(scope="module")
def data():
    return split_corpus(np.random.default_rng(0).integers(0, 17, 400))


def test_train_refuses_a_new_state_naming_out_dir_and_overwrite(tmp_path, data):
    out = str(tmp_path / "run")
    train(new_state(), *data, out_dir=out)
    before = snapshot(out)
    with pytest.raises(TrainingError, match=r"out_dir .* holds a training run .*load_checkpoint\(.*"
                                            r"overwrite=True"):
        train(new_state(steps=2), *data, out_dir=out)
    assert snapshot(out) == before
    train(new_state(steps=2), *data, out_dir=out, overwrite=True)
    assert load_checkpoint(os.path.join(out, "ckpt.npz")).step == 2


def test_train_continues_a_state_of_the_folder_s_run(tmp_path, data):
    out = str(tmp_path / "run")
    train(new_state(steps=2), *data, out_dir=out)
    state = load_checkpoint(os.path.join(out, "ckpt.npz"))
    state.train_config = TrainConfig(**{**state.train_config.__dict__, "steps": 4})
    train(state, *data, out_dir=out)
    assert load_checkpoint(os.path.join(out, "ckpt.npz")).step == 4


def test_train_refuses_an_older_state_of_the_same_run(tmp_path, data):
    out = str(tmp_path / "run")
    early = train(new_state(steps=2), *data, out_dir=str(tmp_path / "early"))
    early_copy = load_checkpoint(str(tmp_path / "early" / "ckpt.npz"))
    early.train_config = TrainConfig(**{**early.train_config.__dict__, "steps": 4})
    train(early, *data, out_dir=out)          # the same run, carried on in another folder
    early_copy.train_config = early.train_config
    with pytest.raises(TrainingError, match="holds step 4 of this same run and the state is at step 2"):
        train(early_copy, *data, out_dir=out)


def test_a_checkpoint_older_than_run_ids_is_continued_by_its_own_state(tmp_path, data):
    out = tmp_path / "run"
    state = train(new_state(steps=2), *data, out_dir=str(out))
    state.run_id = None                       # as written before checkpoints named their run
    save_checkpoint(str(out / "ckpt.npz"), state)
    with np.load(out / "ckpt.npz") as f:
        assert json.loads(str(f["meta"]))["run_id"] is None
    resumed = load_checkpoint(str(out / "ckpt.npz"))
    resumed.train_config = TrainConfig(**{**resumed.train_config.__dict__, "steps": 4})
    train(resumed, *data, out_dir=str(out))
    assert resumed.run_id is not None and load_checkpoint(str(out / "ckpt.npz")).run_id == resumed.run_id
    with pytest.raises(TrainingError, match="which this state does not continue"):
        train(new_state(steps=6), *data, out_dir=str(out))


def test_an_unreadable_checkpoint_is_refused_without_overwrite(tmp_path, data):
    out = tmp_path / "run"
    out.mkdir()
    (out / "ckpt.npz").write_bytes(b"my own numbers")
    with pytest.raises(TrainingError, match="a ckpt.npz that is not a readable training checkpoint"):
        train(new_state(steps=2), *data, out_dir=str(out))
    assert (out / "ckpt.npz").read_bytes() == b"my own numbers"


def test_a_folder_where_a_run_file_belongs_is_refused_even_with_overwrite(tmp_path, data):
    out = tmp_path / "run"
    (out / "model.safetensors").mkdir(parents=True)
    with pytest.raises(TrainingError, match="is a folder where the run's model.safetensors belongs"):
        train(new_state(steps=2), *data, out_dir=str(out), overwrite=True)


def test_overwrite_must_be_a_boolean(data):
    with pytest.raises(ValueError, match="overwrite must be True or False, got 'yes'"):
        train(new_state(), *data, out_dir=None, overwrite="yes")


def test_run_in_folder_describes_what_is_there(tmp_path, data):
    assert run_in_folder(str(tmp_path / "absent")) is None
    train(new_state(steps=2), *data, out_dir=str(tmp_path / "run"))
    text = run_in_folder(str(tmp_path / "run"))
    assert text.startswith("a training run (ckpt.npz at step 2 of 2, best validation loss ")
    assert text.endswith(", and its model.safetensors)")


# ----------------------------------------------------------------------------- ckpt.npz
def test_loading_the_training_state_names_the_model_beside_it(capsys, finished_run):
    ckpt, model = os.path.join(finished_run, "ckpt.npz"), os.path.join(finished_run, "model.safetensors")
    with pytest.raises(CheckpointError, match="npgpt's training state") as err:
        npgpt.load(ckpt)
    assert ckpt in str(err.value) and f"the model is {model} beside it" in str(err.value)
    code, _, err = run_cli(capsys, "generate", "-m", ckpt, "-p", "RO", "-n", "3")
    one_line_error(code, err, ckpt, model)
    code, out, err = run_cli(capsys, "generate", "-m", model, "-p", "RO", "-n", "3")
    assert code == 0, err


def test_a_training_state_without_its_model_says_so(tmp_path):
    save_checkpoint(str(tmp_path / "ckpt.npz"), new_state())
    with pytest.raises(CheckpointError, match=r"model.safetensors \(not written yet\) beside it"):
        npgpt.load(tmp_path / "ckpt.npz")


# ----------------------------------------------------------------------------- save_gpt2 / save_hf
def gpt2_model(seed=0, **changes):
    return npgpt.GPT(tiny_config(residual="pre_norm", gelu="tanh", tie_embeddings=True,
                                 output_bias=False, **changes), seed=seed)


def llama_model(seed=0, vocab_size=17):
    return npgpt.GPT(tiny_config(vocab_size=vocab_size, norm="rmsnorm", positions="rope",
                                 mlp="swiglu", output_bias=False), seed=seed)


def test_a_model_folder_of_its_own_files_is_swapped_whole(tmp_path):
    folder = tmp_path / "hf"
    gpt2_model(0).save_gpt2(folder)
    os.chmod(folder, 0o750)
    inode = os.stat(folder).st_ino
    gpt2_model(1).save_gpt2(folder)
    assert os.stat(folder).st_ino != inode                   # a new folder, swapped in
    assert os.stat(folder).st_mode & 0o777 == 0o750          # with the old one's permissions
    assert os.listdir(tmp_path) == ["hf"]


@pytest.mark.parametrize("save", ["save_gpt2", "save_hf"])
def test_a_folder_with_user_files_is_updated_in_place_and_they_are_untouched(tmp_path, save):
    model = gpt2_model if save == "save_gpt2" else llama_model
    folder = tmp_path / "hf"
    getattr(model(0), save)(folder)
    (folder / "notes.txt").write_text("trained on news")
    (folder / "data").mkdir()
    (folder / "data" / "eval.jsonl").write_text("{}")
    os.chmod(folder, 0o750)
    identity = {name: os.stat(folder / name).st_ino for name in ("notes.txt", "data", ".")}
    user = {k: v for k, v in snapshot(folder).items() if k in ("notes.txt", "data/eval.jsonl")}
    second = model(1)
    getattr(second, save)(folder)
    assert {name: os.stat(folder / name).st_ino for name in identity} == identity
    assert os.stat(folder).st_mode & 0o777 == 0o750
    assert {k: v for k, v in snapshot(folder).items() if k in user} == user
    assert sorted(os.listdir(folder)) == ["config.json", "data", "model.safetensors", "notes.txt"]
    back = npgpt.load(folder)
    assert all(np.array_equal(back.params[k], v) for k, v in second.params.items())
    assert os.listdir(tmp_path) == ["hf"]


def test_stale_weights_of_an_earlier_model_are_removed(tmp_path):
    folder = tmp_path / "hf"
    llama_model(0).save_hf(folder)
    for name in ("pytorch_model.bin", "model-00001-of-00002.safetensors",
                 "model.safetensors.index.json"):
        (folder / name).write_bytes(b"old weights")
    (folder / "README.md").write_text("card")
    llama_model(1).save_hf(folder)
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]


def test_a_folder_where_a_model_file_belongs_is_refused(tmp_path):
    folder = tmp_path / "hf"
    (folder / "tokenizer.json").mkdir(parents=True)
    (folder / "tokenizer.json" / "mine.txt").write_text("x")
    with pytest.raises(ValueError, match="tokenizer.json' is a folder where a file of the saved content belongs"):
        llama_model(0).save_hf(folder)
    assert sorted(os.listdir(folder)) == ["tokenizer.json"]


def hf_tokenizer():
    from npgpt.tokenizers import load_tokenizer_json

    return load_tokenizer_json(os.path.join(FIXTURES, "hf_tokenizers", "llama3.json"))


def test_save_hf_with_a_tokenizer_it_cannot_write_removes_the_old_one_and_says_so(tmp_path):
    folder = tmp_path / "hf"
    tokenizer = hf_tokenizer()
    first = llama_model(0, vocab_size=tokenizer.vocab_size)
    first.tokenizer = tokenizer
    first.save_hf(folder)
    assert npgpt.load(folder).tokenizer == tokenizer
    second = llama_model(1, vocab_size=tokenizer.vocab_size)
    second.tokenizer = npgpt.CharTokenizer.from_text(TEXT)
    with pytest.warns(UserWarning, match=r"model.tokenizer \(CharTokenizer\) cannot be written as "
                                         r"tokenizer.json.*with no tokenizer \(any earlier one is removed\)"):
        second.save_hf(folder)
    assert "tokenizer.json" not in os.listdir(folder)
    assert npgpt.load(folder).tokenizer is None


def test_save_hf_with_its_tokenizer_json_says_nothing(tmp_path):
    tokenizer = hf_tokenizer()
    model = llama_model(0, vocab_size=tokenizer.vocab_size)
    model.tokenizer = tokenizer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save_hf(tmp_path / "hf")
        model.save_hf(tmp_path / "hf")
    assert npgpt.load(tmp_path / "hf").tokenizer == tokenizer


def test_save_gpt2_with_a_tokenizer_it_cannot_write_says_so(tmp_path):
    model = gpt2_model(0)
    model.tokenizer = npgpt.CharTokenizer.from_text("abcdefghijklmnop")
    with pytest.warns(UserWarning, match=r"CharTokenizer\) cannot be written as vocab.json \+ merges.txt"):
        model.save_gpt2(tmp_path / "hf")
    assert sorted(os.listdir(tmp_path / "hf")) == ["config.json", "model.safetensors"]


def test_save_gpt2_removes_a_tokenizer_json_of_another_model(tmp_path):
    folder = tmp_path / "hf"
    gpt2_model(0).save_gpt2(folder)
    (folder / "tokenizer.json").write_text("{}")
    with pytest.warns(UserWarning, match="tokenizer.json .* is removed"):
        gpt2_model(1).save_gpt2(folder)
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]


def test_is_model_file_claims_the_model_s_files_only():
    for name in ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json",
                 "vocab.json", "merges.txt", "model-00003-of-00004.safetensors",
                 "pytorch_model-00001-of-00002.bin", "model.safetensors.index.json"):
        assert npgpt.io.is_model_file(name), name
    for name in ("README.md", "notes.txt", ".gitattributes", "generation_config.json",
                 "model.safetensors.bak", "data"):
        assert not npgpt.io.is_model_file(name), name


def test_atomic_folder_moves_back_a_file_that_appeared_during_the_swap(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "w.bin").write_text("v1")

    def fill(tmp):
        (folder / "late.txt").write_text("written meanwhile")   # by another program
        with open(os.path.join(tmp, "w.bin"), "w") as f:
            f.write("v2")
    assert files.atomic_folder(folder, fill, owned={"w.bin"}) == "swapped"
    assert sorted(os.listdir(folder)) == ["late.txt", "w.bin"]
    assert (folder / "late.txt").read_text() == "written meanwhile"


# ----------------------------------------------------------------------------- single files
def test_model_save_to_a_folder_is_refused_and_writes_nothing(tmp_path):
    (tmp_path / "run2").mkdir()
    (tmp_path / "run2" / "notes.txt").write_text("x")
    with pytest.raises(IsADirectoryError, match="run2 is a folder; model.save writes one file: name it, "
                                                "e.g. .*model.safetensors"):
        npgpt.GPT(tiny_config(), seed=0).save(tmp_path / "run2")
    assert os.listdir(tmp_path / "run2") == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["run2"]


def test_model_save_replaces_a_file_the_caller_named(tmp_path):
    path = tmp_path / "m.safetensors"
    npgpt.GPT(tiny_config(), seed=0).save(path)
    second = npgpt.GPT(tiny_config(), seed=1)
    second.save(path)
    assert np.array_equal(npgpt.load(path).params["token_embedding.weight"],
                          second.params["token_embedding.weight"])


def test_save_checkpoint_to_a_folder_is_refused(tmp_path):
    (tmp_path / "ckpt.npz").mkdir()
    with pytest.raises(IsADirectoryError, match="a folder, not a file"):
        save_checkpoint(str(tmp_path / "ckpt.npz"), new_state())
    assert os.listdir(tmp_path) == ["ckpt.npz"]


@pytest.mark.skipif(not has_module("matplotlib"), reason="matplotlib is not installed")
def test_a_picture_replaces_the_file_it_names_and_refuses_a_folder(tmp_path):
    from npgpt import viz

    probs = np.full(5, 0.2)
    path = tmp_path / "heat.png"
    path.write_bytes(b"an older picture")
    (tmp_path / "notes.txt").write_text("keep")
    viz.plot_heatmap(probs, "t", 0, path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["heat.png", "notes.txt"]
    viz.plot_heatmap(probs, "t", 0, path=str(tmp_path / "plain"))     # matplotlib's rule: .png added
    assert (tmp_path / "plain.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "figures.png").mkdir()
    with pytest.raises(IsADirectoryError):
        viz.plot_heatmap(probs, "t", 0, path=str(tmp_path / "figures.png"))
    assert os.listdir(tmp_path / "figures.png") == []



def test_a_run_id_that_is_not_16_hex_digits_is_a_damaged_checkpoint(tmp_path):
    state = new_state()
    state.run_id = "not hex at all!!"
    save_checkpoint(str(tmp_path / "ckpt.npz"), state)
    with pytest.raises(ValueError, match="run_id must be 16 hex digits or null, got 'not hex"):
        load_checkpoint(str(tmp_path / "ckpt.npz"))


@pytest.mark.skipif(not has_module("matplotlib"), reason="matplotlib is not installed")
def test_npgpt_plot_replaces_the_named_picture_and_nothing_beside_it(capsys, tmp_path):
    picture = tmp_path / "embeddings.png"
    picture.write_bytes(b"last week's picture")
    (tmp_path / "notes.txt").write_text("keep")
    code, out, err = run_cli(capsys, "plot", "embeddings", "--png", str(picture))
    assert code == 0, err
    assert picture.read_bytes()[:4] == b"\x89PNG"
    assert sorted(os.listdir(tmp_path)) == ["embeddings.png", "notes.txt"]
