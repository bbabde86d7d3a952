"""`.widget` templates: loading, rendering with data, clear errors, safe escaping.

Where a template renders with openai-chatkit 1.6.5 (`chatkit.widgets`), the tree
must be the same: each such test builds with both.
"""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import chatkit.widgets as ref_widgets
import pytest
from jinja2 import UndefinedError
from pydantic import BaseModel

from chatkit_asgi.widgets import (
    Badge,
    BasicRoot,
    Card,
    DynamicWidgetComponent,
    DynamicWidgetRoot,
    Text,
    Title,
    WidgetDataError,
    WidgetTemplate,
    WidgetTemplateError,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Direct usage of named widget classes is deprecated:DeprecationWarning"
)

# What ChatKit's widget builder exports: the template writes `| tojson` for every value.
PROFILE: dict[str, Any] = {
    "version": "1.0",
    "name": "Profile",
    "template": (
        '{"type":"Card","size":"sm","children":['
        '{"type":"Title","value":{{ name | tojson }}},'
        '{"type":"Text","value":{{ ("Age: " ~ age) | tojson }},"color":"secondary"}'
        "{% for tag in tags %}"
        ',{"type":"Badge","label":{{ tag | tojson }}}'
        "{% endfor %}"
        "]}"
    ),
    "jsonSchema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
        "required": ["name", "age", "tags"],
        "additionalProperties": False,
    },
    "outputJsonPreview": {"type": "Card", "children": []},  # builder extras are ignored
}

GOOD = {"name": "Ada", "age": 36, "tags": ["math", "engines"]}
EXPECTED = {
    "type": "Card",
    "size": "sm",
    "children": [
        {"type": "Title", "value": "Ada"},
        {"type": "Text", "value": "Age: 36", "color": "secondary"},
        {"type": "Badge", "label": "math"},
        {"type": "Badge", "label": "engines"},
    ],
}


def dump(widget: BaseModel) -> Any:
    return json.loads(widget.model_dump_json(exclude_none=True))


def data_error(template: WidgetTemplate, data: Any) -> WidgetDataError:
    """The error of a build that validates the data against the schema."""
    with pytest.raises(WidgetDataError) as info:
        template.build(data, validate_data=True)
    return info.value


def same_as_reference(definition: dict[str, Any], data: Any) -> Any:
    """Our tree for `data`, checked equal to openai-chatkit's; its JSON."""
    ours = WidgetTemplate(definition).build(data)
    theirs = ref_widgets.WidgetTemplate(definition).build(data)
    assert ours.model_dump(exclude_none=True) == theirs.model_dump(exclude_none=True)
    return dump(ours)


# ---------------------------------------------------------------------------
# Good data
# ---------------------------------------------------------------------------


def test_build_renders_the_data_into_a_dynamic_tree_like_the_reference() -> None:
    widget = WidgetTemplate(PROFILE).build(GOOD)

    assert isinstance(widget, DynamicWidgetRoot)
    assert all(isinstance(child, DynamicWidgetComponent) for child in widget.children or [])
    assert dump(widget) == EXPECTED
    reference = ref_widgets.WidgetTemplate(PROFILE).build(GOOD)
    assert widget.model_dump(exclude_none=True) == reference.model_dump(exclude_none=True)


def test_build_typed_gives_the_typed_classes() -> None:
    widget = WidgetTemplate(PROFILE).build_typed(GOOD)

    assert isinstance(widget, Card)
    assert [type(child) for child in widget.children] == [Title, Text, Badge, Badge]
    assert dump(widget) == EXPECTED


def test_pydantic_models_are_data_too() -> None:
    class Profile(BaseModel):
        name: str
        age: int
        tags: tuple[str, ...]

    widget = WidgetTemplate(PROFILE).build(Profile(name="Ada", age=36, tags=("math", "engines")))
    assert dump(widget) == EXPECTED


def test_tuples_count_as_arrays() -> None:
    widget = WidgetTemplate(PROFILE).build({**GOOD, "tags": ("math", "engines")})
    assert dump(widget) == EXPECTED


def test_from_file_is_relative_to_the_calling_module(tmp_path: Path) -> None:
    here = Path(__file__).parent
    assert Path.cwd() != here  # (so that the path cannot be read relative to the cwd)
    (here / "assets").mkdir(exist_ok=True)
    (here / "assets" / "_profile.widget").write_text(json.dumps(PROFILE))
    try:
        template = WidgetTemplate.from_file("assets/_profile.widget")
        reference = ref_widgets.WidgetTemplate.from_file("assets/_profile.widget")
    finally:
        (here / "assets" / "_profile.widget").unlink()
        (here / "assets").rmdir()
    assert (template.name, template.version) == ("Profile", "1.0")
    assert dump(template.build(GOOD)) == EXPECTED
    assert reference.name == "Profile"  # the reference reads the same file

    absolute = tmp_path / "profile.widget"
    absolute.write_text(json.dumps(PROFILE))
    assert WidgetTemplate.from_file(absolute).name == "Profile"


def test_the_example_widget_file_loads() -> None:
    path = Path(__file__).parents[2] / "examples" / "widgets" / "weather.widget"
    card = WidgetTemplate.from_file(path).build(
        {"city": "Oslo", "degrees": 3, "summary": "", "streaming": True, "likes": 0}
    )
    assert card.type == "Card"


def test_a_template_without_schema_renders_any_data() -> None:
    template = WidgetTemplate(
        {"version": "1.0", "name": "Bare", "template": '{"type":"Basic","children":[]}'}
    )
    assert template.data_schema == {}
    assert dump(template.build()) == {"type": "Basic", "children": []}


# ---------------------------------------------------------------------------
# What openai-chatkit accepted
# ---------------------------------------------------------------------------


class Person(BaseModel):
    name: str
    image: str


class Post(BaseModel):
    channel: str
    at: datetime
    user: Person


# `user.*` by attribute, `user` and `at` whole through `tojson`, `at` as text.
POST: dict[str, Any] = {
    "version": "1.0",
    "name": "Post",
    "template": (
        '{"type":"Card","children":['
        '{"type":"Image","src":{{ (user.image) | tojson }}},'
        '{"type":"Text","value":{{ (user.name) | tojson }}},'
        '{"type":"Caption","value":"{{ at }}"}'
        "{% for person in people %}"
        ',{"type":"Text","value":{{ person.name | tojson }}}'
        "{% endfor %}"
        "]}"
    ),
    "jsonSchema": {
        "type": "object",
        "properties": {
            "channel": {"type": "string"},
            "at": {"type": "string"},  # a datetime is checked as its JSON
            "user": {"type": "object"},  # and a model as an object
        },
        "required": ["channel", "user"],
        "additionalProperties": False,
    },
}
PAM = Person(name="Pam", image="/pam.png")
AT = datetime(2025, 3, 1, 16, 48, tzinfo=timezone.utc)
POST_JSON = {
    "type": "Card",
    "children": [
        {"type": "Image", "src": "/pam.png"},
        {"type": "Text", "value": "Pam"},
        {"type": "Caption", "value": "2025-03-01 16:48:00+00:00"},
        {"type": "Text", "value": "Pam"},
        {"type": "Text", "value": "Jim"},
    ],
}


def test_build_basic_is_deprecated_and_gives_a_basic_root() -> None:
    definition = {
        "version": "1.0",
        "name": "Basic",
        "template": (
            '{"type":"Basic","gap":2,"children":[{"type":"Title","value":{{ name | tojson }}}]}'
        ),
    }
    template = WidgetTemplate(definition)
    with pytest.warns(
        DeprecationWarning,
        match="WidgetTemplate.build_basic is deprecated. Use WidgetTemplate.build instead.",
    ):
        widget = template.build_basic({"name": "Harry"})

    assert type(widget) is BasicRoot
    assert dump(widget) == {
        "type": "Basic",
        "gap": 2,
        "children": [{"type": "Title", "value": "Harry"}],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = ref_widgets.WidgetTemplate(definition).build_basic({"name": "Harry"})
    assert widget.model_dump(exclude_none=True) == theirs.model_dump(exclude_none=True)
    with pytest.raises(WidgetTemplateError, match="not a widget"), pytest.warns(DeprecationWarning):
        WidgetTemplate(PROFILE).build_basic(GOOD)  # a Card is not a Basic root


@pytest.mark.parametrize(
    "data",
    [
        # models inside a mapping, and inside a list of it
        {"channel": "#a", "at": AT, "user": PAM, "people": [PAM, Person(name="Jim", image="")]},
        # a model containing models (dumped as the reference dumps it)
        "model",
    ],
)
def test_pydantic_models_nested_anywhere_build_as_in_the_reference(data: Any) -> None:
    class Thread(Post):
        people: list[Person]

    if data == "model":
        data = Thread(channel="#a", at=AT, user=PAM, people=[PAM, Person(name="Jim", image="")])
    assert same_as_reference(POST, data) == POST_JSON


def test_tojson_writes_nested_models_and_datetimes_where_the_reference_failed() -> None:
    template = {
        "version": "1.0",
        "name": "Whole",
        "template": (
            '{"type":"Card","children":[],"post":{{ post | tojson }},"tags":{{ tags | tojson }}}'
        ),
    }
    post = Post(channel="#a", at=AT, user=PAM)

    widget = WidgetTemplate(template).build({"post": post, "tags": {"x"}})

    assert widget.__pydantic_extra__ == {
        "post": {"channel": "#a", "at": "2025-03-01T16:48:00Z", "user": dict(PAM)},
        "tags": ["x"],
    }
    with pytest.raises(TypeError, match="not JSON serializable"):
        ref_widgets.WidgetTemplate(template).build({"post": post, "tags": {"x"}})


def test_data_that_does_not_match_the_schema_builds_as_in_the_reference() -> None:
    # `channel` is required and `people` is not an allowed field: the reference never
    # looks at the schema, and neither does `build` unless asked.
    data = {"at": AT, "user": PAM, "people": [PAM, Person(name="Jim", image="")]}
    assert same_as_reference(POST, data) == POST_JSON

    profile = {"name": "Ada", "age": "thirty-six", "tags": [], "extra": True}
    assert same_as_reference(PROFILE, profile)["children"][1] == {
        "type": "Text",
        "value": "Age: thirty-six",
        "color": "secondary",
    }


def test_validation_is_opt_in_per_template_or_per_build() -> None:
    wrong = {"name": "Ada", "tags": []}

    with pytest.raises(WidgetDataError, match="age: is required but missing"):
        WidgetTemplate(PROFILE, validate_data=True).build(wrong)
    with pytest.raises(WidgetDataError, match="age: is required but missing"):
        WidgetTemplate(PROFILE).build(wrong, validate_data=True)
    with pytest.raises(WidgetDataError, match="age: is required but missing"):
        WidgetTemplate(PROFILE).validate(wrong)
    with pytest.raises(WidgetDataError, match="age: is required but missing"):
        WidgetTemplate(PROFILE, validate_data=True).build_typed(wrong)
    # (`age` is then missing from the rendering itself: a data error of its own.)
    with pytest.raises(WidgetDataError, match="age: is missing"):
        WidgetTemplate(PROFILE, validate_data=True).build(wrong, validate_data=False)


def test_validation_reads_nested_models_as_their_json() -> None:
    template = WidgetTemplate(POST, validate_data=True)
    data = {"channel": "#a", "at": AT, "user": PAM, "people": []}
    with pytest.raises(WidgetDataError) as info:
        template.build(data)
    assert info.value.problems == [("people", "is not an allowed field")]  # `user` is an object
    del data["people"]
    assert template.validate(data) == data


@pytest.mark.parametrize(
    ("template", "data", "field"),
    [
        ('{"type":"Card","children":[],"x":{{ x | tojson }}}', {}, "x"),
        ('{"type":"Card","children":[],"x":{{ (x) | tojson }}}', {"y": 1}, "x"),
        ('{"type":"Card","children":[],"x":{{ user.name | tojson }}}', {"user": {}}, "user.name"),
        (
            '{"type":"Card","children":[],"x":{{ user.name | tojson }}}',
            {"user": Post(channel="#a", at=AT, user=PAM)},
            "user.name",
        ),
        (
            '{"type":"Card","children":[{% for i in items %}'
            '{"type":"Text","value":{{ i.label | tojson }}}{% if not loop.last %},{% endif %}'
            "{% endfor %}]}",
            {"items": [{"label": "a"}, {"text": "b"}]},
            "items[1].label",
        ),
        ('{"type":"Card","children":[],"x":{{ {"a": x} | tojson }}}', {}, "x"),
        ('{"type":"Card","children":[],"x":"{{ a.b.c }}"}', {"a": {"b": {}}}, "a.b.c"),
        ('{"type":"Card","children":[],"x":"{{ x ~ 1 }}"}', {}, "x"),
    ],
)
def test_a_missing_value_is_a_data_error_naming_the_field(
    template: str, data: dict[str, Any], field: str
) -> None:
    definition = {"version": "1.0", "name": "Missing", "template": template}

    with pytest.raises(WidgetDataError) as info:
        WidgetTemplate(definition).build(data)

    assert info.value.field == field
    assert f"{field}: is missing" in str(info.value)
    assert isinstance(info.value, UndefinedError)  # what the reference raised for `{{ x }}`
    with pytest.raises((UndefinedError, TypeError)):  # the reference: a bare TypeError for tojson
        ref_widgets.WidgetTemplate(definition).build(data)


# ---------------------------------------------------------------------------
# Bad data: every problem named by its field (validation asked for)
# ---------------------------------------------------------------------------


def test_a_missing_field_is_named() -> None:
    error = data_error(WidgetTemplate(PROFILE), {"name": "Ada", "tags": []})

    assert error.field == "age"
    assert error.problems == [("age", "is required but missing")]
    assert "age: is required but missing" in str(error)
    assert "'Profile'" in str(error)


def test_a_wrong_type_is_named_with_its_path() -> None:
    error = data_error(WidgetTemplate(PROFILE), {**GOOD, "tags": ["math", 7]})

    assert error.field == "tags[1]"
    assert error.problems == [("tags[1]", "7 is not of type 'string'")]


def test_nested_missing_fields_have_dotted_paths() -> None:
    error = data_error(WidgetTemplate(PROFILE), {**GOOD, "address": {}})
    assert error.problems == [("address.city", "is required but missing")]


def test_every_problem_is_listed() -> None:
    error = data_error(WidgetTemplate(PROFILE), {"name": 1, "age": -1, "extra": True})

    assert error.problems == [
        ("age", "-1 is less than the minimum of 0"),
        ("extra", "is not an allowed field"),
        ("name", "1 is not of type 'string'"),
        ("tags", "is required but missing"),
    ]
    assert isinstance(error, ValueError)


def test_no_data_against_a_schema_names_what_is_missing() -> None:
    error = data_error(WidgetTemplate(PROFILE), None)
    assert [field for field, _ in error.problems] == ["age", "name", "tags"]


def test_without_schema_an_undefined_variable_is_a_data_error() -> None:
    template = WidgetTemplate(
        {"version": "1.0", "name": "Loose", "template": '{"type":"Card","children":[{{ x }}]}'}
    )
    with pytest.raises(WidgetDataError, match="x: is missing"):
        template.build({})


def test_data_must_be_a_mapping_or_a_model() -> None:
    with pytest.raises(TypeError, match="mapping or a pydantic model"):
        WidgetTemplate(PROFILE).build(["Ada"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Bad templates
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({**PROFILE, "version": "2.0"}, "unsupported spec version '2.0'"),
        ({"version": "1.0", "name": "X"}, "needs 'template'"),
        ({**PROFILE, "template": "{{ unclosed"}, "bad template"),
        ({**PROFILE, "jsonSchema": {"type": "nonsense"}}, "invalid jsonSchema"),
        ({**PROFILE, "template": 42}, "template must be a string"),
    ],
)
def test_broken_definitions_are_refused_when_loaded(
    definition: dict[str, Any], message: str
) -> None:
    with pytest.raises(WidgetTemplateError, match=message):
        WidgetTemplate(definition)


def test_invalid_json_output_says_where() -> None:
    template = WidgetTemplate(
        {"version": "1.0", "name": "Broken", "template": '{"type":"Card","children":[}'}
    )
    with pytest.raises(WidgetTemplateError, match=r"rendered invalid JSON .* column 28"):
        template.build()


def test_output_that_is_not_a_widget_root_is_refused() -> None:
    template = WidgetTemplate(
        {"version": "1.0", "name": "NotRoot", "template": '{"type":"Text","value":"x"}'}
    )
    with pytest.raises(WidgetTemplateError, match="not a widget"):
        template.build()
    with pytest.raises(WidgetTemplateError, match="not a widget"):
        template.build_typed()


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.widget"
    path.write_text("{not json")
    with pytest.raises(WidgetTemplateError, match="not valid JSON"):
        WidgetTemplate.from_file(path)


# ---------------------------------------------------------------------------
# Injection: data can never break or extend the JSON
# ---------------------------------------------------------------------------

# A template that inserts values without `tojson`, inside string literals: with a
# plain Jinja environment (the reference's) quotes in the data end the string.
LOOSE: dict[str, Any] = {
    "version": "1.0",
    "name": "Loose",
    "template": (
        '{"type":"Card","children":[{"type":"Text","value":"Hello {{ name }}!"},'
        '{"type":"Badge","label":{{ label | tojson }}}]}'
    ),
}

NASTY = [
    '", "color": "danger',
    '"}]}, {"type": "Card", "children": [{"type": "Text", "value": "pwned',
    "back\\slash \\u0022 and a line\nbreak\ttab\x00nul",
    "</script><script>alert(1)</script> & 'quotes'",
    "{{ 7 * 7 }} {% raw %}",
    "\u2028\u2029 emoji \U0001f600",
]


@pytest.mark.parametrize("nasty", NASTY)
def test_plain_placeholders_escape_data_as_json(nasty: str) -> None:
    widget = WidgetTemplate(LOOSE).build({"name": nasty, "label": nasty})

    assert dump(widget) == {
        "type": "Card",
        "children": [
            {"type": "Text", "value": f"Hello {nasty}!"},
            {"type": "Badge", "label": nasty},
        ],
    }


def test_the_reference_is_open_to_that_injection() -> None:
    # Why the escaping matters: the same template and data in openai-chatkit.
    reference = ref_widgets.WidgetTemplate(LOOSE).build(
        {"name": '", "color": "danger', "label": "x"}
    )
    assert reference.model_dump(exclude_none=True)["children"][0]["color"] == "danger!"


def test_keys_of_the_data_are_not_an_injection_route_either() -> None:
    template = WidgetTemplate(
        {
            "version": "1.0",
            "name": "Keys",
            "template": (
                '{"type":"Card","children":[{% for k, v in props.items() %}'
                '{"type":"Text","id":"{{ k }}","value":"{{ v }}"}{% if not loop.last %},'
                "{% endif %}{% endfor %}]}"
            ),
        }
    )
    widget = template.build({"props": {'a", "x": "y': 'b"'}})
    assert dump(widget) == {
        "type": "Card",
        "children": [{"type": "Text", "id": 'a", "x": "y', "value": 'b"'}],
    }


def test_scalars_are_written_as_json() -> None:
    template = WidgetTemplate(
        {
            "version": "1.0",
            "name": "Scalars",
            "template": (
                '{"type":"Card","children":[],"collapsed":{{ flag }},"gap":{{ n }},'
                '"ratio":{{ x }},"note":{{ nothing }}}'
            ),
        }
    )
    widget = template.build({"flag": True, "n": 3, "x": 1.5, "nothing": None})
    assert widget.__pydantic_extra__ == {"collapsed": True, "gap": 3, "ratio": 1.5, "note": None}


def test_non_finite_numbers_are_refused() -> None:
    template = WidgetTemplate(
        {"version": "1.0", "name": "NaN", "template": '{"type":"Card","children":[],"x":{{ x }}}'}
    )
    with pytest.raises(WidgetTemplateError, match="cannot be written as JSON"):
        template.build({"x": float("nan")})


def test_tojson_macros_and_safe_insert_json_unchanged() -> None:
    template = WidgetTemplate(
        {
            "version": "1.0",
            "name": "Macros",
            "template": (
                '{% macro text(v) %}{"type":"Text","value":{{ v | tojson }}}{% endmacro %}'
                '{"type":"Card","children":[{{ text(a) }},{{ text("<b>" ~ a) }},{{ raw | safe }}]}'
            ),
        }
    )
    widget = template.build({"a": 'say "hi"', "raw": '{"type":"Divider"}'})
    assert dump(widget) == {
        "type": "Card",
        "children": [
            {"type": "Text", "value": 'say "hi"'},
            {"type": "Text", "value": '<b>say "hi"'},
            {"type": "Divider"},
        ],
    }


def test_the_sandbox_refuses_python_internals() -> None:
    template = WidgetTemplate(
        {
            "version": "1.0",
            "name": "Escape",
            "template": '{"type":"Card","children":[],"x":"{{ name.__class__.__mro__ }}"}',
        }
    )
    with pytest.raises(WidgetTemplateError, match="unsafe"):
        template.build({"name": "x"})


def test_templates_cannot_change_the_data() -> None:
    template = WidgetTemplate(
        {
            "version": "1.0",
            "name": "Mutate",
            "template": '{"type":"Card","children":[],"x":"{{ items.append(1) }}"}',
        }
    )
    items: list[int] = []
    with pytest.raises(WidgetTemplateError):
        template.build({"items": items})
    assert items == []
