"""The conversations every chat template is rendered with, by npgpt and by jinja2 (the parity
fixture ``tests/fixtures/chat_templates/expected.json`` and the live comparison share them)."""

from datetime import datetime

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello"}],
    "system_user": [{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Hi there"}],
    "turns": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "What is 2+2?"},
              {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"},
              {"role": "assistant", "content": "  6  "}, {"role": "user", "content": "Thanks"}],
    "unicode_newlines": [
        {"role": "user", "content": "Grüße, 世界! 🙂\nline two\n\n  indented\ttab"},
        {"role": "assistant", "content": "Привет\n"},
        {"role": "user", "content": "\"quotes\" and 'apostrophes' {{ not a tag }} {% nor this %}"}],
    "no_system_turns": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"}],
    "roles_out_of_order": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    "assistant_first": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}],
    "empty": [],
}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "Name"}},
                   "required": ["city"]}}}]
TOOL_CALL_TURNS = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call0", "type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "name": "get_weather", "tool_call_id": "call0", "content": "18 C, sunny"},
]
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def strftime_fixed(format):
    """A clock stopped at 26 Sep 2024, so renderings that print today's date can be recorded."""
    return datetime(2024, 9, 26, 12, 0).strftime(format)


def cases():
    """(name, values) pairs: every conversation with add_generation_prompt off and on, and a
    tool conversation with tools."""
    for name, messages in CONVERSATIONS.items():
        for prompt in (False, True):
            yield f"{name}/gen={int(prompt)}", dict(messages=messages, add_generation_prompt=prompt,
                                                   tools=None, documents=None, **SPECIAL_TOKENS)
    yield "tools/gen=1", dict(messages=TOOL_CALL_TURNS, add_generation_prompt=True, tools=TOOLS,
                              documents=None, **SPECIAL_TOKENS)


def jinja2_render(source, values):
    """transformers' rendering (its sandboxed jinja2 environment) with the fixed clock:
    ("text", str), ("raised", the template's raise_exception message) or ("error", what failed)."""
    from transformers.utils.chat_template_utils import _compile_jinja_template
    import jinja2
    template = _compile_jinja_template(source)
    try:
        return "text", template.render(**values, strftime_now=strftime_fixed)
    except jinja2.exceptions.TemplateError as error:
        kind = "error" if isinstance(error, (jinja2.exceptions.UndefinedError,
                                             jinja2.exceptions.SecurityError)) else "raised"
        return kind, str(error)
    except (TypeError, ValueError, AttributeError, KeyError) as error:
        return "error", f"{type(error).__name__}: {error}"
