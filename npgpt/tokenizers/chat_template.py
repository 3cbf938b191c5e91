"""A tokenizer's chat template applied to a conversation (transformers'
``tokenizer.apply_chat_template``): the Jinja source the model's files carry, rendered by
:class:`npgpt.chat.template.Template`, then encoded.

- :func:`special_token_strings` -- ``bos_token``, ``eos_token``, ... for the template, from
  the tokenizer's ids;
- :func:`apply_chat_template` -- the rendered conversation, as ids or as text; every
  tokenizer's ``apply_chat_template`` method calls it.
"""

from ..chat.template import Template

__all__ = ["apply_chat_template", "special_token_strings", "template_of", "encode_rendered"]


def special_token_strings(tokenizer):
    """``bos_token``, ``eos_token``, ... as strings for a template, from the tokenizer's ids.

    >>> from npgpt import CharTokenizer
    >>> tok = CharTokenizer.from_text("ab$")
    >>> tok.eos_token_id = 0
    >>> special_token_strings(tok)
    {'eos_token': '$'}
    """
    values = {}
    for name in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{name}_token_id", None)
        text = None
        if isinstance(token_id, int):
            try:
                text = (tokenizer.id_to_token(token_id) if hasattr(tokenizer, "id_to_token")
                        else tokenizer.decode([token_id]))
            except (ValueError, KeyError, IndexError):
                text = None
        if text is None:
            text = getattr(tokenizer, f"{name}_token", None)
        if isinstance(text, str):
            values[f"{name}_token"] = text
    return values


def template_of(tokenizer, chat_template=None):
    """The parsed chat template: ``chat_template`` if given (text or a Template), else the
    tokenizer's own; a clear error when there is none.

    >>> from npgpt import CharTokenizer
    >>> tok = CharTokenizer.from_text("ab")
    >>> template_of(tok, "{{ messages[0].content }}").render(messages=[{"content": "ab"}])
    'ab'
    """
    source = chat_template if chat_template is not None else getattr(tokenizer, "chat_template", None)
    if source is None:
        raise ValueError("this tokenizer has no chat template (tokenizer.chat_template is None): "
                         "load an instruct model whose files carry one, or pass chat_template=")
    return source if isinstance(source, Template) else Template(source)


def encode_rendered(tokenizer, text):
    """The ids of rendered chat text: the template wrote the special tokens, so none are added.

    >>> from npgpt import CharTokenizer
    >>> encode_rendered(CharTokenizer.from_text("ab"), "ba")
    [1, 0]
    """
    try:
        return list(tokenizer.encode(text, add_special_tokens=False))
    except TypeError:
        return list(tokenizer.encode(text))


def apply_chat_template(tokenizer, conversation, *, tools=None, documents=None, chat_template=None,
                        add_generation_prompt=False, tokenize=True, **kwargs):
    """The conversation rendered with the tokenizer's chat template, as transformers'
    ``tokenizer.apply_chat_template``: token ids (``tokenize=True``) or the text.

    Parameters
    ----------
    tokenizer : an npgpt tokenizer with ``chat_template`` (or pass ``chat_template=``)
    conversation : list of ``{"role": ..., "content": ...}`` dicts
    add_generation_prompt : bool, end with the header of an assistant turn
    tokenize : bool, ids (no special tokens added: the template writes them) or the text
    **kwargs : further values the template may read (e.g. ``date_string``)

    >>> from npgpt import CharTokenizer
    >>> tok = CharTokenizer.from_text("<>abuser:\\n")
    >>> tok.chat_template = "{% for m in messages %}<{{ m.role }}>:{{ m.content }}\\n{% endfor %}"
    >>> apply_chat_template(tok, [{"role": "user", "content": "ab"}], tokenize=False)
    '<user>:ab\\n'
    """
    template = template_of(tokenizer, chat_template)
    if not isinstance(conversation, (list, tuple)) or not all(isinstance(m, dict) for m in conversation):
        raise ValueError(f"conversation must be a list of dicts with 'role' and 'content', got "
                         f"{conversation!r:.80}")
    values = {**special_token_strings(tokenizer), **kwargs}
    text = template.render(messages=list(conversation), tools=tools, documents=documents,
                           add_generation_prompt=bool(add_generation_prompt), **values)
    return encode_rendered(tokenizer, text) if tokenize else text
