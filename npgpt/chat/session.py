"""A conversation with an instruct model: its chat template, its end-of-turn token, and a KV
cache kept between turns.

Each turn renders the whole conversation with the model's template (``add_generation_prompt``
on) and tokenizes it. The tokens the cache already holds are a prefix of that rendering when
the template renders earlier turns the same way each time, which real templates do; the turn
then feeds only its new tokens. Where the rendering differs (a template that re-renders older
turns, or an answer whose text tokenizes differently from the tokens generated), the cache is
cut back to the first differing token and the rest is fed again: correct in every case, fast
in the usual one.

When the conversation outgrows the context, the oldest turns (a user message and the answer
to it) are dropped from what the model sees, whole, the system message kept; ``messages``
keeps everything and ``dropped_turns`` says how many are out of view.
"""

import time

from ..decoding import GenerationConfig
from ..generation import stream
from ..tokenizers.chat_template import (apply_chat_template, encode_rendered, special_token_strings,
                                        template_of)
from .template import TemplateError

__all__ = ["Chat", "apply_chat_template", "special_token_strings", "end_of_turn_ids"]

_SENTINEL = "\x00npgpt-answer\x00"


def end_of_turn_ids(tokenizer, chat_template=None):
    """The ids that end an answer: the tokenizer's EOS, and the special token the template
    writes right after an assistant message (``<|im_end|>``, ``<|eot_id|>``, ...).

    >>> from npgpt import CharTokenizer
    >>> tok = CharTokenizer.from_text("ab$")
    >>> tok.eos_token_id, tok.chat_template = 0, "{% for m in messages %}{{ m.content }}$\\n{% endfor %}"
    >>> end_of_turn_ids(tok)            # a character tokenizer has no special tokens: EOS only
    [0]
    """
    ids = set()
    eos = getattr(tokenizer, "eos_token_id", None)
    for token_id in eos if isinstance(eos, (list, tuple)) else [eos]:
        if isinstance(token_id, int):
            ids.add(token_id)
    specials = dict(getattr(tokenizer, "special_tokens", None) or {})
    try:
        text = apply_chat_template(tokenizer, [{"role": "user", "content": "hi"},
                                               {"role": "assistant", "content": _SENTINEL}],
                                   chat_template=chat_template, tokenize=False)
    except TemplateError:
        text = ""
    after = text.partition(_SENTINEL)[2].lstrip(" ")
    for token in sorted(specials, key=len, reverse=True):
        if after.startswith(token):
            ids.add(specials[token])
            break
    return sorted(ids)


class Chat:
    """A multi-turn conversation with ``model``, answering with ``npgpt.stream``.

    Parameters
    ----------
    model : npgpt.GPT with a tokenizer that has a chat template
    system : str or None, the system message
    chat_template : str or None, a template to use instead of the tokenizer's
    **generation_options : any option of :func:`npgpt.generate` (``max_new_tokens`` defaults
        to 512, ``eos_token_id`` to the end-of-turn ids)

    Attributes
    ----------
    messages : the conversation so far (system message first when given)
    dropped_turns : turns left out of the model's view because the context is full
    turns : one dict per answer: ``prompt_tokens``, ``reused_tokens`` (from the cache),
        ``new_tokens``, ``first_token_seconds``, ``seconds``

    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=12, context_length=64, d_model=16, num_heads=2,
    ...                                   num_layers=1, positions="rope", norm="rmsnorm"), seed=0)
    >>> model.tokenizer = npgpt.CharTokenizer.from_text("<>:abusertn\\n")
    >>> model.tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>:{{ m.content }}\\n{% endfor %}"
    >>> chat = Chat(model, max_new_tokens=3)
    >>> len(chat.send("ab")), [m["role"] for m in chat.messages]
    (3, ['user', 'assistant'])
    """

    def __init__(self, model, system=None, *, chat_template=None, **generation_options):
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ValueError("Chat needs model.tokenizer (a model loaded with its tokenizer)")
        if system is not None and not isinstance(system, str):
            raise ValueError(f"system must be a str or None, got {system!r:.80}")
        self.model, self.tokenizer = model, tokenizer
        self.template = template_of(tokenizer, chat_template)
        options = {"max_new_tokens": 512, **generation_options}
        if options.get("eos_token_id") is None:
            options["eos_token_id"] = end_of_turn_ids(tokenizer, self.template) or None
        self.config = GenerationConfig(**options)
        if self.config.num_beams > 1 or self.config.num_return_sequences > 1:
            raise ValueError(f"a chat answers with one sampled or greedy sequence; num_beams="
                             f"{self.config.num_beams} and num_return_sequences="
                             f"{self.config.num_return_sequences} do not apply")
        self.messages = [] if system is None else [{"role": "system", "content": system}]
        self.dropped_turns = 0
        self.turns = []
        self._cache, self._cached = None, []

    def reset(self):
        """Forget the conversation (the system message stays) and the cache.

        >>> import npgpt
        >>> chat = Chat(_example_model(npgpt), system="be brief", max_new_tokens=2)
        >>> _ = chat.send("ab"); chat.reset(); chat.messages
        [{'role': 'system', 'content': 'be brief'}]
        """
        self.messages = self.messages[:1] if self._has_system() else []
        self.dropped_turns = 0
        self._cache, self._cached = None, []

    def send(self, text):
        """Answer ``text``: the whole answer as a str.

        >>> import npgpt
        >>> chat = Chat(_example_model(npgpt), max_new_tokens=4)
        >>> len(chat.send("ab")), chat.turns[0]["new_tokens"]
        (4, 4)
        """
        return "".join(self.stream(text))

    def stream(self, text):
        """Answer ``text``, yielding the answer's text piece by piece as tokens are chosen.

        >>> import npgpt
        >>> chat = Chat(_example_model(npgpt), max_new_tokens=3)
        >>> len(list(chat.stream("ab"))) >= 1, chat.messages[-1]["role"]
        (True, 'assistant')
        """
        if not isinstance(text, str):
            raise ValueError(f"a message must be a str, got {text!r:.80}")
        started = time.perf_counter()
        self.messages.append({"role": "user", "content": text})
        try:
            ids = self._prompt()
        except (ValueError, TemplateError):
            self.messages.pop()
            raise
        keep = self._keeps_cache()
        reused = self._reuse(ids) if keep else 0
        tokens, shown, first = [], "", None
        for step in stream(self.model, ids, self.config, cache=self._cache if keep else None):
            token = int(step[0])
            if self._ends(token):
                break
            tokens.append(token)
            text_now = self.tokenizer.decode(tokens)
            piece = text_now[len(shown):].rstrip("\ufffd") if not text_now.endswith("\ufffd") else ""
            if piece:
                if first is None:
                    first = time.perf_counter() - started
                shown += piece
                yield piece
        answer = self.tokenizer.decode(tokens)
        if answer[len(shown):]:
            yield answer[len(shown):]
        self._cached = list(ids) + tokens          # what the cache holds (the last token not fed)
        self._cached = self._cached[:self._cache.length] if keep and self._cache is not None else []
        self.messages.append({"role": "assistant", "content": answer})
        self.turns.append({"prompt_tokens": len(ids), "reused_tokens": reused, "new_tokens": len(tokens),
                           "first_token_seconds": first, "seconds": time.perf_counter() - started})

    # -- inside a turn ------------------------------------------------------------------------

    def _has_system(self):
        return bool(self.messages) and self.messages[0]["role"] == "system"

    def _render(self):
        head = 1 if self._has_system() else 0
        visible = self.messages[:head] + self.messages[head + 2 * self.dropped_turns:]
        values = special_token_strings(self.tokenizer)
        text = self.template.render(messages=visible, add_generation_prompt=True, tools=None,
                                    documents=None, **values)
        return encode_rendered(self.tokenizer, text)

    def _prompt(self):
        """The ids of the conversation, dropping the oldest turns until an answer fits."""
        C = self.model.config.context_length
        room = min(self.config.max_new_tokens, max(1, C // 4))
        while True:
            ids = self._render()
            if len(ids) + room <= C:
                return ids
            head = 1 if self._has_system() else 0
            if len(self.messages) - head - 2 * self.dropped_turns <= 1:
                raise ValueError(f"the message takes {len(ids)} tokens with the template; with room for "
                                 f"{room} answer tokens it does not fit the context of {C}")
            self.dropped_turns += 1

    def _reuse(self, ids):
        """Cut the cache back to the longest prefix it shares with ``ids``; its length."""
        common = 0
        for a, b in zip(self._cached, ids):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)           # at least one token to feed
        if self._cache is None:                      # grows as the conversation does
            self._cache = self.model.new_cache(1, capacity=self.model.config.context_length,
                                               reserve=min(self.model.config.context_length, len(ids) + 256))
        self._cache.truncate(common)
        self._cached = self._cached[:common]
        return common

    def _keeps_cache(self):
        """Whether turns can share a cache: plain greedy or sampling in exact mode (speculative
        decoding keeps two caches, chunk and slide modes rebuild theirs: every turn feeds all)."""
        c = self.config
        return c.draft_model is None and c.context_overflow == "exact"

    def _ends(self, token):
        eos = self.config.eos_token_id
        return eos is not None and token in (eos if isinstance(eos, (list, tuple)) else (eos,))


def _example_model(npgpt):
    """A tiny rotary model with a character tokenizer and a template, for the examples, made
    with the package they imported (this module cannot import it: the package imports this)."""
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=17, context_length=64, d_model=16, num_heads=2,
                                      num_layers=1, positions="rope", norm="rmsnorm"), seed=0)
    model.tokenizer = npgpt.CharTokenizer.from_text("<>:abusertnimfyo ")
    model.tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>:{{ m.content }}{% endfor %}"
    return model
