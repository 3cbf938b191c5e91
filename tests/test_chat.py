"""npgpt.Chat and ``npgpt chat``: the conversation rendered with the model's template each turn,
the KV cache kept between turns (and cut back where a template re-renders), turns dropped
when the context is full, the end-of-turn token, and generate's ``cache=``."""

import io

import numpy as np
import pytest

import npgpt
from npgpt.chat import Chat, TemplateError, apply_chat_template, end_of_turn_ids

from helpers import run_cli

CHARS = "<>:abusertnimfyo\n ."
TEMPLATE = ("{% for m in messages %}<{{ m.role }}>:{{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>:{% endif %}")
# re-renders older answers shorter: the cache must be cut back where the text changes
SHORTENING = ("{% for m in messages %}{% if m.role == 'assistant' and not loop.last and loop.index0 < "
              "messages|length - 2 %}<a>:{{ m.content[:1] }}\n{% else %}<{{ m.role }}>:{{ m.content }}\n"
              "{% endif %}{% endfor %}{% if add_generation_prompt %}<assistant>:{% endif %}")


def tiny_model(context_length=256, template=TEMPLATE, seed=0):
    cfg = npgpt.GPTConfig(vocab_size=len(CHARS), context_length=context_length, d_model=16, num_heads=2,
                          num_layers=2, positions="rope", norm="rmsnorm", mlp="swiglu")
    model = npgpt.GPT(cfg, seed=seed).astype(np.float64)      # float64: cached = uncached exactly
    model.tokenizer = npgpt.CharTokenizer.from_text(CHARS)
    model.tokenizer.chat_template = template
    return model


def _conversation(model, reuse, turns=("ab", "ba", "aa", "bb", "ab"), **options):
    chat = Chat(model, **{"max_new_tokens": 6, **options})
    answers = []
    for text in turns:
        if not reuse:
            chat._cache, chat._cached = None, []
        answers.append(chat.send(text))
    return chat, answers


@pytest.mark.parametrize("template", [TEMPLATE, SHORTENING], ids=["prefix", "re-rendering"])
@pytest.mark.parametrize("options", [{}, {"do_sample": True, "temperature": 0.9, "seed": 3}],
                         ids=["greedy", "sampling"])
def test_turns_that_reuse_the_cache_answer_as_turns_that_feed_everything(template, options):
    model = tiny_model(template=template)
    kept, with_cache = _conversation(model, True, **options)
    fresh, without = _conversation(model, False, **options)
    assert with_cache == without
    reused = [t["reused_tokens"] for t in kept.turns]
    assert reused[0] == 0 and all(r > 0 for r in reused[1:])
    assert all(t["reused_tokens"] == 0 for t in fresh.turns)


def test_a_template_that_extends_the_conversation_feeds_only_the_new_tokens():
    chat, _ = _conversation(tiny_model(), True)
    for before, turn in zip(chat.turns, chat.turns[1:]):
        assert turn["reused_tokens"] >= before["prompt_tokens"] + before["new_tokens"] - 1


def test_a_template_that_re_renders_older_turns_is_cut_back_to_the_first_difference():
    chat, _ = _conversation(tiny_model(template=SHORTENING), True)
    previous = [t["prompt_tokens"] + t["new_tokens"] for t in chat.turns]
    assert any(t["reused_tokens"] < p - 1 for t, p in zip(chat.turns[1:], previous))


def test_a_full_context_drops_the_oldest_turns_whole_and_keeps_the_system_message():
    model = tiny_model(context_length=64)
    chat = Chat(model, system="be brief", max_new_tokens=4)
    for _ in range(6):
        chat.send("abab")
    assert chat.dropped_turns > 0
    assert len(chat.messages) == 1 + 2 * 6                        # every turn still in the history
    shown = chat.template.render(messages=[chat.messages[0]] + chat.messages[1 + 2 * chat.dropped_turns:],
                                 add_generation_prompt=True)
    assert shown.startswith("<system>:be brief\n<user>:abab")
    assert len(model.tokenizer.encode(shown)) + 4 <= 64


def test_a_message_too_long_for_the_context_is_refused_and_leaves_the_conversation_as_it_was():
    chat = Chat(tiny_model(context_length=32), max_new_tokens=4)
    with pytest.raises(ValueError, match="does not fit the context of 32"):
        chat.send("ab" * 40)
    assert chat.messages == []
    assert chat.send("ab") is not None


def test_reset_forgets_the_conversation_but_not_the_system_message():
    chat = Chat(tiny_model(), system="sys", max_new_tokens=3)
    chat.send("ab")
    chat.reset()
    assert chat.messages == [{"role": "system", "content": "sys"}]
    chat.send("ba")
    assert chat.turns[-1]["reused_tokens"] == 0


@pytest.mark.parametrize("options", [{"context_overflow": "chunk"}, {"draft": True}], ids=["chunk", "draft"])
def test_modes_that_cannot_share_a_cache_feed_every_turn_whole_and_still_answer(options):
    model = tiny_model()
    if options.pop("draft", False):
        options["draft_model"] = tiny_model(seed=1)
    chat, answers = _conversation(model, True, turns=("ab", "ba"), **options)
    assert all(t["reused_tokens"] == 0 for t in chat.turns)
    assert answers == _conversation(model, False, turns=("ab", "ba"), **options)[1]


def test_beam_search_is_refused_naming_the_options():
    with pytest.raises(ValueError, match="num_beams=2"):
        Chat(tiny_model(), num_beams=2)


def test_stream_yields_the_answer_as_it_comes_and_send_returns_it_whole():
    model = tiny_model()
    pieces = list(Chat(model, max_new_tokens=6).stream("ab"))
    assert len(pieces) > 1 and "".join(pieces) == Chat(model, max_new_tokens=6).send("ab")


class _SpecialTokenizer:
    """A tokenizer with special tokens, as the GGUF and tokenizer.json readers have."""

    eos_token_id = 2
    special_tokens = {"<|im_start|>": 1, "<|im_end|>": 7, "<|endoftext|>": 2}
    chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                     "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

    def id_to_token(self, i):
        return {v: k for k, v in self.special_tokens.items()}[i]

    def encode(self, text, add_special_tokens=True):
        return [ord(c) for c in text]


def test_the_end_of_turn_token_is_found_after_an_assistant_message():
    assert end_of_turn_ids(_SpecialTokenizer()) == [2, 7]


def test_apply_chat_template_renders_text_or_ids_and_names_a_missing_template():
    tok = _SpecialTokenizer()
    messages = [{"role": "user", "content": "hi"}]
    text = apply_chat_template(tok, messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert apply_chat_template(tok, messages, add_generation_prompt=True) == [ord(c) for c in text]
    plain = npgpt.CharTokenizer.from_text("ab")
    with pytest.raises(ValueError, match="no chat template"):
        plain.apply_chat_template(messages)
    with pytest.raises(TemplateError, match="Roles must alternate"):
        apply_chat_template(tok, messages, chat_template="{{ raise_exception('Roles must alternate') }}")


@pytest.mark.parametrize("options, why", [
    ({"num_beams": 2}, "beam search"), ({"context_overflow": "chunk"}, "chunk"),
])
def test_generate_cache_is_refused_where_it_cannot_hold_a_prefix(options, why):
    model = tiny_model()
    cache = model.new_cache(1)
    with pytest.raises(ValueError, match=why):
        npgpt.generate(model, [1, 2, 3], max_new_tokens=2, cache=cache, **options)
    model([[1, 2, 3]], cache=cache)
    with pytest.raises(ValueError, match="holds 3 tokens and the prompt has 3"):
        npgpt.generate(model, [1, 2, 3], max_new_tokens=2, cache=cache)
    with pytest.raises(ValueError, match="KVCache of this model"):
        npgpt.generate(model, [1, 2, 3, 4], cache=tiny_model(context_length=128).new_cache(1))


def test_generate_with_a_prefix_cache_equals_generate_without():
    model = tiny_model()
    ids = [1, 2, 3, 4, 5, 6, 7]
    cache = model.new_cache(1)
    model(np.array([ids[:4]]), cache=cache)
    with_cache = npgpt.generate(model, ids, max_new_tokens=8, cache=cache)
    np.testing.assert_array_equal(with_cache.sequences, npgpt.generate(model, ids, max_new_tokens=8).sequences)
    assert cache.length == len(ids) + 8 - 1


def test_the_chat_command_reads_one_turn_a_line_and_resets(monkeypatch, capsys):
    model = tiny_model()
    monkeypatch.setattr("npgpt.cli.chat.load_model", lambda name: model)
    monkeypatch.setattr("sys.stdin", io.StringIO("ab\nba\n/reset\nab\n/exit\nnever read\n"))
    code, out, err = run_cli(capsys, "chat", "-m", "tiny", "-n", "4")
    first, second = _conversation(model, True, turns=("ab", "ba"), max_new_tokens=4)[1]
    assert code == 0
    assert out == f"{first}\n{second}\n{first}\n"             # after /reset: the first answer again


def test_the_chat_command_refuses_a_model_without_a_template(monkeypatch, capsys):
    model = tiny_model(template=None)
    monkeypatch.setattr("npgpt.cli.chat.load_model", lambda name: model)
    code, out, err = run_cli(capsys, "chat", "-m", "plain")
    assert code == 2 and "no chat template" in err and len(err.strip().splitlines()) == 1


def test_smollm2_answers_the_capital_of_france_then_of_germany_in_one_conversation():
    from helpers import model_path
    model = npgpt.load(model_path("SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert model.tokenizer.chat_template is not None
    chat = Chat(model, max_new_tokens=24)
    assert "Paris" in chat.send("What is the capital of France?")
    assert "Berlin" in chat.send("And of Germany?")
    first, second = chat.turns
    assert second["reused_tokens"] == first["prompt_tokens"] + first["new_tokens"]   # only the new turn fed
    assert chat.messages[0]["role"] == "user"                 # the template's own system turn, not ours
    assert chat.template.render(messages=chat.messages[:1], add_generation_prompt=True).startswith(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
