"""A ``tokenizer.json``'s post-processor: the special tokens put around a text's ids.

Supported: ``TemplateProcessing`` (single sequences), ``ByteLevel``, ``RobertaProcessing``,
``BertProcessing``, ``Sequence``.
"""

from __future__ import annotations

from ..io.errors import CheckpointError, short_repr
from .hf_fields import sequence_parts, spec_field, spec_kind

_POST_PROCESSORS = {"Sequence": ("processors",),
                    "ByteLevel": ("add_prefix_space", "trim_offsets", "use_regex"),
                    "TemplateProcessing": ("single", "pair", "special_tokens"),
                    "RobertaProcessing": ("sep", "cls", "trim_offsets", "add_prefix_space"),
                    "BertProcessing": ("sep", "cls")}


def read_post_processor(spec, known_id, where="post_processor"):
    """(ids before, ids after) the text's ids when special tokens are added.

    ``TemplateProcessing``'s ``single`` template is a list of ``{"SpecialToken": {"id":
    name}}`` and one ``{"Sequence": {"id": "A"}}``; each name's ``ids`` come from its
    ``special_tokens``. ``RobertaProcessing`` and ``BertProcessing`` put their ``cls``
    token before and their ``sep`` token after. ``ByteLevel`` only moves offsets. A
    ``Sequence`` applies each in turn, so a later one wraps the earlier ones.

    >>> spec = {"type": "BertProcessing", "cls": ["[CLS]", 1], "sep": ["[SEP]", 2]}
    >>> read_post_processor(spec, known_id=lambda i: i < 10)
    ([1], [2])
    """
    if spec is None:
        return [], []
    kind = spec_kind(spec, where, _POST_PROCESSORS)
    if kind == "ByteLevel":
        for key in ("add_prefix_space", "trim_offsets"):
            spec_field(spec, key, (bool,), where, required=True)
        return [], []
    if kind == "Sequence":
        before, after = [], []
        for part, at in sequence_parts(spec, "processors", where):
            b, a = read_post_processor(part, known_id, at)
            before, after = b + before, after + a
        return before, after
    if kind in ("RobertaProcessing", "BertProcessing"):
        around = []
        for key in ("cls", "sep"):
            pair = spec_field(spec, key, (list,), where, required=True)
            if len(pair) != 2 or not isinstance(pair[0], str) or type(pair[1]) is not int \
                    or not known_id(pair[1]):
                raise CheckpointError(f"{where}.{key} must be [token, known token id], got "
                                      f"{short_repr(pair)}")
            around.append(pair[1])
        return around[:1], around[1:]
    single = spec_field(spec, "single", (list,), where, required=True)
    spec_field(spec, "pair", (list,), where, required=True)             # for pairs of texts: unused
    specials = spec_field(spec, "special_tokens", (dict,), where, required=True)
    before, after, seen_a = [], [], False
    for k, item in enumerate(single):
        at = f"{where}.single[{k}]"
        if not isinstance(item, dict) or len(item) != 1 or not isinstance(
                next(iter(item.values())), dict):
            raise CheckpointError(f"{at} must be {{'SpecialToken': ...}} or {{'Sequence': ...}}, "
                                  f"got {short_repr(item)}")
        (what, body), = item.items()
        name = body.get("id")
        if what == "Sequence" and name == "A" and not seen_a:
            seen_a = True
        elif what == "SpecialToken" and isinstance(name, str) and name in specials:
            ids = specials[name].get("ids") if isinstance(specials[name], dict) else None
            if not isinstance(ids, list) or not all(
                    type(i) is int and known_id(i) for i in ids):
                raise CheckpointError(f"{where}.special_tokens[{name!r}].ids must be a list of "
                                      f"known token ids, got {short_repr(ids)}")
            (after if seen_a else before).extend(ids)
        else:
            raise CheckpointError(f"{at}: expected a special token of special_tokens or one "
                                  f"sequence 'A', got {short_repr(item)}")
    if not seen_a:
        raise CheckpointError(f"{where}.single has no sequence 'A'")
    return before, after
