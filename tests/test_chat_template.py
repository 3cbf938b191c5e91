"""The chat-template renderer (npgpt/chat/template.py) against jinja2 as transformers runs it:
recorded renderings of real models' templates, live parity when transformers imports, every
supported construct, the refusals, and the sandbox's bounds."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt.chat.template import MAX_OUTPUT, Template, TemplateError, render

from chat_cases import cases, jinja2_render, strftime_fixed

FIXTURES = Path(__file__).parent / "fixtures" / "chat_templates"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
TEMPLATES = sorted(EXPECTED)


def _mine(source, values):
    try:
        return "text", Template(source).render(**values, strftime_now=strftime_fixed)
    except TemplateError as error:
        return "error", str(error)


def _agrees(mine, reference):
    kind, value = reference
    if kind == "text":
        return mine == ("text", value)
    if kind == "raised":            # the template's own raise_exception: the same message
        return mine[0] == "error" and f"the template raised an error: {value}" in mine[1]
    return mine[0] == "error"       # jinja2 failed (undefined, None iterated): so do we


def test_the_fixture_holds_at_least_ten_real_templates_with_their_sources():
    sources = (FIXTURES / "SOURCES.md").read_text(encoding="utf-8")
    assert len(TEMPLATES) >= 10
    for name in TEMPLATES:
        assert name in sources, name


@pytest.mark.parametrize("name", TEMPLATES)
def test_real_templates_render_as_jinja2_does_for_every_conversation(name):
    source = (FIXTURES / name).read_text(encoding="utf-8")
    expected = EXPECTED[name]
    for case, values in cases():
        mine = _mine(source, values)
        assert _agrees(mine, expected[case]), (case, mine, expected[case])


@pytest.mark.transformers
@pytest.mark.parametrize("name", TEMPLATES)
def test_real_templates_render_as_jinja2_does_live(name):
    pytest.importorskip("jinja2")
    pytest.importorskip("transformers")
    source = (FIXTURES / name).read_text(encoding="utf-8")
    for case, values in cases():
        assert _agrees(_mine(source, values), jinja2_render(source, values)), case


# --- constructs, each against its jinja2 meaning --------------------------------------------

CONSTRUCTS = [
    ("{{ 'a' ~ 1 ~ none }}", {}, "a1None"),
    ("{{ 1 + 2 * 3 - 8 / 4 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ -3|abs }}", {}, "5.0 3 1 1024 3"),
    ("{{ 'x' if flag else 'y' }}{{ 'z' if not flag }}", {"flag": False}, "yz"),
    ("{% for m in ms %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}"
     "{{ loop.length }}{{ loop.revindex }}|{% endfor %}", {"ms": "ab"},
     "01TrueFalse22|12FalseTrue21|"),
    ("{% for m in ms %}{{ m }}{% else %}none{% endfor %}", {"ms": []}, "none"),
    ("{% for m in ms if m > 1 %}{{ m }}{{ loop.index }}{% endfor %}", {"ms": [1, 2, 3]}, "2132"),
    ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"a": 1, "b": 2}}, "a=1;b=2;"),
    ("{% for k, v in d|items %}{{ k }}{{ v }}{% endfor %}", {"d": {"a": 1}}, "a1"),
    ("{% if a %}1{% elif b %}2{% else %}3{% endif %}", {"a": 0, "b": 1}, "2"),
    ("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{% endfor %}{{ x }}", {}, "1"),
    ("{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}",
     {}, "4"),
    ("{% set t %}a{{ 1 }}b{% endset %}[{{ t }}]", {}, "[a1b]"),
    ("{% macro f(a, b='B') %}<{{ a }}{{ b }}>{% endmacro %}{{ f(1) }}{{ f(2, b=3) }}", {}, "<1B><23>"),
    ("{% macro w() %}[{{ caller() }}]{% endmacro %}{% call w() %}in{% endcall %}", {}, "[in]"),
    ("{{ ms[1:] }} {{ ms[-1] }} {{ ms[::-1] }} {{ ms[:1] }}", {"ms": [1, 2, 3]}, "[2, 3] 3 [3, 2, 1] [1]"),
    ("{{ m.role }} {{ m['role'] }} {{ m.missing }}|{{ m.get('role') }}", {"m": {"role": "user"}},
     "user user |user"),
    ("{{ ' a '|trim }}{{ 'a'|upper }}{{ 'B'|lower }}{{ [1, 2]|length }}{{ nothing|default('d') }}"
     "{{ none|default('d') }}{{ ''|default('e', true) }}", {}, "aAb2dNonee"),
    ("{{ {'b': [1, 'é']}|tojson }} {{ [1]|tojson(indent=2) }}", {}, '{"b": [1, "é"]} [\n  1\n]'),
    ("{{ ['a', 'b']|join(', ') }} {{ ms|map(attribute='c')|join }} {{ ms|selectattr('c', 'equalto', 2)|list }}",
     {"ms": [{"c": 1}, {"c": 2}]}, "a, b 12 [{'c': 2}]"),
    ("{{ x is defined }}{{ y is defined }}{{ none is none }}{{ 's' is string }}{{ {} is mapping }}"
     "{{ 3 is odd }}{{ 1 is number }}{{ x is not none }}", {"x": 1}, "TrueFalseTrueTrueTrueTrueTrueTrue"),
    ("{{ 'a' in 'cat' }}{{ 1 not in [1] }}{{ 'k' in {'k': 1} }}", {}, "TrueFalseTrue"),
    ("{{ 'Hello'.startswith('He') }}{{ ' x '.strip() }}{{ 'a,b'.split(',') }}", {}, "Truex['a', 'b']"),
    ("{%- for i in [1, 2] -%}\n  {{ i }}\n{%- endfor %}", {}, "12"),
    ("a\n  {% if true %}\nb\n  {% endif %}\nc\n", {}, "a\nb\nc"),
    ("{# a comment #}\nx{#- trimmed -#}  y", {}, "xy"),
    ("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}"
     "{{ i }}{% endfor %}", {}, "02"),
    ("{{ '%s-%d'|format('a', 2) }} {{ 'x{}y'.format(1) }} {{ 'hi there'|title }}", {}, "a-2 x1y Hi There"),
    ("{% raw %}{{ not rendered }}{% endraw %}", {}, "{{ not rendered }}"),
    ("{% generation %}gen{% endgeneration %}", {}, "gen"),
]


@pytest.mark.parametrize("source, values, expected", CONSTRUCTS)
def test_each_construct_renders_as_documented(source, values, expected):
    assert render(source, **values) == expected


@pytest.mark.transformers
@pytest.mark.parametrize("source, values, expected", CONSTRUCTS)
def test_each_construct_renders_as_jinja2_does(source, values, expected):
    pytest.importorskip("jinja2")
    pytest.importorskip("transformers")
    assert jinja2_render(source, values) == ("text", expected)


# --- refusals and the sandbox -----------------------------------------------------------------

@pytest.mark.parametrize("source, words", [
    ("{% include 'x' %}", ["unsupported tag 'include'", "line 1, column 4"]),
    ("ok\n{{ x|shuffle }}", ["unsupported filter 'shuffle'", "line 2"]),
    ("{{ x is prime }}", ["unsupported test 'prime'"]),
    ("{% for x in y %}", ["missing 'endfor'"]),
    ("{{ 1 + }}", ["unexpected the end of the tag"]),
    ("{{ 1 +", ["never closed"]),
    ("{{ 'a' }", ["never closed"]),
    ("{{ ''.__class__ }}", ["'__class__' is not allowed"]),
    ("{{ x.__class__.__mro__ }}", ["'__class__' is not allowed"]),
    ("{{ m.items.__self__ }}", ["'__self__' is not allowed"]),
    ("{{ 'a'.format.__globals__ }}", ["is not allowed"]),
    ("{{ '{0.__class__}'.format(1) }}", ["reaches into a value"]),
    ("{{ [].append(1) }}", ["not callable"]),
    ("{{ range }}{{ cycler() }}", ["not callable"]),
    ("{{ raise_exception('Roles must alternate') }}", ["the template raised an error: Roles must alternate"]),
    ("{% for i in range(10**9) %}{% endfor %}", ["too long"]),
    ("{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}", ["steps"]),
    ("{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}", ["longer than"]),
    ("{{ 'x' * 10**9 }}", ["too long"]),
    ("{{ 2 ** 100000 }}", ["too large"]),
    ("{{ '%999999999s'|format(1) }}", ["too large"]),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", ["deep"]),
    ("{{ " + "(" * 200 + "1" + ")" * 200 + " }}", ["nested"]),
    ("{{ 1 / 0 }}", ["division by zero"]),
    ("{{ 'a' - 1 }}", ["cannot compute"]),
    ("{{ undefined_thing.attr }}", ["undefined"]),
    ("{% set x.y = 1 %}", ["not a namespace"]),
    ("{% break %}", ["outside a loop"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_refusals_are_template_errors_naming_the_construct(source, words):
    with pytest.raises(TemplateError) as info:
        render(source, x=1, m={"a": 1})
    for word in words:
        assert word in str(info.value)


def test_an_output_just_under_the_bound_renders_and_one_over_it_stops():
    assert len(render("{{ 'x' * n }}", n=MAX_OUTPUT)) == MAX_OUTPUT
    with pytest.raises(TemplateError, match="longer than"):
        render("{{ 'x' * n }}y", n=MAX_OUTPUT)


_PIECES = ["{{", "}}", "{%", "%}", "{#", "#}", "-", "+", "if", "for", "in", "endif", "endfor", "else",
           "set", "=", "x", "messages", "m", ".", "[", "]", "(", ")", "'s'", "1", "|", "trim", "is",
           "defined", "not", "and", "~", "*", "**", "loop", "namespace", "macro", "endmacro", " ", "\n",
           ",", ":", "__class__", "raise_exception", "range", "9999999"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_hostile_templates_raise_only_template_errors(pieces):
    source = "".join(pieces)
    try:
        render(source, messages=[{"role": "user", "content": "hi"}], x=3)
    except TemplateError:
        pass


_EXPRESSIONS = st.recursive(
    st.one_of(st.integers(-50, 50).map(str), st.sampled_from(["'a'", "'bc'", "x", "s", "items", "true", "none"])),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "~", "==", "!=", "<", "and", "or", "in"]), inner)
          .map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda e: f"(not {e})"),
        inner.map(lambda e: f"({e}|length)" if "'" in e else f"({e} is defined)"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
    ), max_leaves=6)


@pytest.mark.transformers
@settings(max_examples=300, deadline=None)
@given(_EXPRESSIONS)
def test_random_expressions_evaluate_as_jinja2_does(expression):
    pytest.importorskip("jinja2")
    pytest.importorskip("transformers")
    values = {"x": 3, "s": "bcd", "items": [1, "a"]}
    source = "{{ " + expression + " }}"
    reference = jinja2_render(source, values)
    mine = _mine(source, values)
    if reference[0] == "text":
        assert mine == reference, source
    else:
        assert mine[0] == "error", (source, reference, mine)
