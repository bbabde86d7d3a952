"""Widget templates: `.widget` files rendered with data into widget trees.

A `.widget` file is what ChatKit's widget builder exports: JSON with a `version`
(`"1.0"`), a `name`, a `template` (a Jinja template whose output is the widget's
JSON) and a `jsonSchema` describing the data the template expects::

    template = WidgetTemplate.from_file("weather.widget")   # next to this module
    widget = template.build({"city": "Paris", "degrees": 21})

As in openai-chatkit, the data is rendered as given: the `jsonSchema` is not
enforced unless asked (`validate_data=True`, or `template.validate(data)`), and
then missing or wrong data fails with a `WidgetDataError` naming each field. A
value the template uses but the data lacks always fails with a `WidgetDataError`
naming it (`user.name`, `items[2].label`), `| tojson` included.

The data may be a mapping or a pydantic model, with models, datetimes and other
pydantic-serializable values nested anywhere: `| tojson` writes them as pydantic
would.

Rendering is safer than a plain Jinja environment, and the builder's templates
render the same:

* the environment is sandboxed and cannot change the data it is given;
* escaping is for JSON, not HTML: a string written with `{{ value }}` (inside a
  JSON string literal) has its quotes, backslashes and control characters escaped,
  so data can neither break the JSON nor add props to it; `true`, `false` and
  `null` are written for `True`, `False` and `None`;
* `{{ value | tojson }}` (what the builder writes) inserts a whole JSON value, as
  in any Jinja environment; `| safe` inserts text unescaped, for the rare
  template that needs it.

Where a template renders with openai-chatkit, it renders the same here, except
that data can no longer break out of a string literal, and a bare `{{ flag }}`
writes `true` / `null` rather than Python's `True` / `None`.

Needs the `widgets` extra (`jinja2`, `jsonschema`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

try:
    import jsonschema
    import jsonschema.validators
    from jinja2 import StrictUndefined, Template, TemplateError, Undefined, UndefinedError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.utils import missing
    from markupsafe import Markup
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"widget templates need the 'widgets' extra: pip install 'chatkit-asgi[widgets]' ({exc})"
    ) from exc
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from typing_extensions import deprecated

from ..types.components import BasicRoot, DynamicWidgetRoot, WidgetRoot

__all__ = ["WidgetDataError", "WidgetTemplate", "WidgetTemplateError"]

SUPPORTED_VERSIONS = frozenset({"1.0"})

_ROOTS: TypeAdapter[WidgetRoot] = TypeAdapter(WidgetRoot)


class WidgetTemplateError(ValueError):
    """A widget template cannot be loaded, or did not render a valid widget."""


class WidgetDataError(WidgetTemplateError):
    """The data given to a widget template lacks a value the template uses, or (when
    validated) does not match the template's `jsonSchema`.

    `problems` lists every mismatch as `(field, message)`, where `field` is a
    path like `forecast[2].degrees` (empty for the data as a whole); `field` is
    the first of them.
    """

    def __init__(self, template_name: str, problems: list[tuple[str, str]]) -> None:
        self.template_name = template_name
        self.problems = problems
        self.field = problems[0][0] if problems else ""
        details = "; ".join(
            f"{field}: {message}" if field else message for field, message in problems
        )
        super().__init__(f"data for widget {template_name!r} is invalid: {details}")


class _MissingValueError(WidgetDataError, UndefinedError):
    """A value the template uses is not in the data.

    Also a `jinja2.UndefinedError`, which is what openai-chatkit raised there
    (for a plain `{{ value }}`; under `| tojson` it raised a bare `TypeError`).
    """


class _UndefinedAt(UndefinedError):
    """Jinja's error for an undefined value, remembering what was looked up where."""

    def __init__(self, message: str | None = None, *, obj: Any, name: str | None) -> None:
        super().__init__(message)
        self.obj = obj
        self.name = name


class _StrictUndefined(StrictUndefined):
    """`StrictUndefined` whose error says which value was missing, so that the
    `WidgetDataError` can name the field by its path in the data."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: Any = UndefinedError,
    ) -> None:
        if exc is UndefinedError:
            # (Jinja raises `self._undefined_exception(message)`: a partial carries the
            # rest. Other errors, such as the sandbox's SecurityError, stay as they are.)
            exc = functools.partial(_UndefinedAt, obj=obj, name=name)
        super().__init__(hint, obj, name, cast(Any, exc))


def _json_finalize(value: Any) -> Any:
    """How `{{ value }}` is written: JSON-escaped, since the output is JSON."""
    if isinstance(value, Markup):
        return value  # already safe: `tojson`, `safe`, macro output
    if isinstance(value, str):
        # The text of a JSON string literal, without the quotes around it.
        return Markup(json.dumps(value, ensure_ascii=False)[1:-1])
    if value is None or isinstance(value, bool):
        return Markup(json.dumps(value))
    if isinstance(value, int):
        return Markup(int.__repr__(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be written as JSON")
        return Markup(float.__repr__(value))
    if isinstance(value, Undefined):
        return value  # a StrictUndefined raises when written, naming the variable
    return Markup(json.dumps(str(value), ensure_ascii=False)[1:-1])


def _tojson_default(value: Any) -> Any:
    """What `| tojson` writes for a value `json` does not know: a missing value
    fails (naming it); models, datetimes, sets and the like as pydantic writes them."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return to_jsonable_python(value)


def _tojson_dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(value, default=_tojson_default, **kwargs)


# Autoescaping stays on so that `tojson`, macros and `caller()` produce Markup
# (inserted as is); plain values go through `_json_finalize` (JSON escaping)
# before Jinja's own escape, which leaves Markup untouched. Jinja has no hook to
# replace its HTML escape function, hence the finalize.
_ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=_StrictUndefined,
    autoescape=True,
    finalize=_json_finalize,
    keep_trailing_newline=False,
)
_ENVIRONMENT.policies["json.dumps_function"] = _tojson_dumps


def _arrays_include_tuples(checker: Any, instance: Any) -> bool:
    return isinstance(instance, (list, tuple))


def _validator_for(schema: dict[str, Any], name: str) -> jsonschema.protocols.Validator:
    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        base.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise WidgetTemplateError(
            f"widget {name!r} has an invalid jsonSchema: {exc.message}"
        ) from exc
    extend: Callable[..., type[jsonschema.protocols.Validator]] = jsonschema.validators.extend
    cls = extend(base, type_checker=base.TYPE_CHECKER.redefine("array", _arrays_include_tuples))
    validator: jsonschema.protocols.Validator = cls(schema, format_checker=base.FORMAT_CHECKER)
    return validator


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _problems(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """`(field, message)` for one schema error, naming the field itself where it can."""
    path = _path(error.absolute_path)
    instance = error.instance
    # (Typed as "maybe unset" by the stubs; always set on errors from iter_errors.)
    expected: Any = error.validator_value
    schema: Any = error.schema
    if error.validator == "required" and isinstance(instance, Mapping):
        missing = [name for name in expected if name not in instance]
        return [(_join(path, name), "is required but missing") for name in missing]
    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        known = set(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        extra = [
            name
            for name in instance
            if name not in known and not any(_search(pattern, name) for pattern in patterns)
        ]
        if extra:
            return [(_join(path, name), "is not an allowed field") for name in extra]
    return [(path, error.message)]


def _search(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


class WidgetTemplate:
    """A `.widget` template: renders data into a widget tree.

    `definition` is the parsed `.widget` JSON (`version`, `name`, `template` and
    optionally `jsonSchema`); other keys, such as the builder's previews, are ignored.

    The data is rendered as given, as openai-chatkit does. With `validate_data=True`
    every `build` first checks it against the `jsonSchema` and raises a
    `WidgetDataError` naming each field that is missing or wrong; a good setting
    for tests and development. `build(data, validate_data=True)` asks for one call.
    """

    def __init__(self, definition: Mapping[str, Any], *, validate_data: bool = False) -> None:
        try:
            version = definition["version"]
            name = definition["name"]
            source = definition["template"]
        except KeyError as exc:
            raise WidgetTemplateError(f"a widget definition needs {exc.args[0]!r}") from None
        if version not in SUPPORTED_VERSIONS:
            raise WidgetTemplateError(f"widget {name!r}: unsupported spec version {version!r}")
        self.version: str = version
        self.name: str = name
        self.validate_data = validate_data
        if isinstance(source, Template):
            # Compiled elsewhere (reference compatibility): renders with its own environment.
            self.template: Template = source
        elif isinstance(source, str):
            try:
                self.template = _ENVIRONMENT.from_string(source)
            except TemplateError as exc:
                raise WidgetTemplateError(f"widget {name!r}: bad template: {exc}") from exc
        else:
            raise WidgetTemplateError(f"widget {name!r}: template must be a string")
        schema = definition.get("jsonSchema") or {}
        if not isinstance(schema, Mapping):
            raise WidgetTemplateError(f"widget {name!r}: jsonSchema must be an object")
        self.data_schema: dict[str, Any] = dict(schema)
        # (Checked when loaded even if data is not validated: a broken schema is a bug.)
        self._validator = _validator_for(self.data_schema, name) if schema else None

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, validate_data: bool = False
    ) -> WidgetTemplate:
        """Load a `.widget` file; a relative path is relative to the calling module's file."""
        file = Path(path)
        if not file.is_absolute():
            caller = Path(sys._getframe(1).f_code.co_filename)
            if caller.is_file():
                file = caller.resolve().parent / file
        try:
            definition = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise WidgetTemplateError(f"{file} is not valid JSON: {exc}") from exc
        if not isinstance(definition, dict):
            raise WidgetTemplateError(f"{file} does not hold a widget definition object")
        return cls(definition, validate_data=validate_data)

    def validate(self, data: Mapping[str, Any] | BaseModel | None = None) -> dict[str, Any]:
        """The data as the template sees it, checked against the `jsonSchema`.

        Raises `WidgetDataError` naming every field that is missing or wrong.
        Nested models, datetimes and the like are checked as their JSON.
        """
        values = _normalize(data)
        self._check(values)
        return values

    def render(
        self,
        data: Mapping[str, Any] | BaseModel | None = None,
        *,
        validate_data: bool | None = None,
    ) -> str:
        """The widget JSON the template writes for `data`.

        The data is checked against the `jsonSchema` first if `validate_data`
        (default: the template's setting) is true.
        """
        values = _normalize(data)
        if self.validate_data if validate_data is None else validate_data:
            self._check(values)
        try:
            return self.template.render(values)
        except UndefinedError as exc:
            raise _MissingValueError(self.name, [_missing_field(exc, values)]) from exc
        except (TemplateError, ValueError) as exc:
            raise WidgetTemplateError(f"widget {self.name!r}: {exc}") from exc

    def build(
        self,
        data: Mapping[str, Any] | BaseModel | None = None,
        *,
        validate_data: bool | None = None,
    ) -> DynamicWidgetRoot:
        """The widget tree for `data`, as dynamic components (the reference's choice).

        Dynamic components keep every prop the template wrote, typed or not;
        use `build_typed` for typed component classes.
        """
        tree = self._parse(data, validate_data)
        try:
            return DynamicWidgetRoot.model_validate(tree)
        except ValidationError as exc:
            raise self._not_a_widget(exc) from exc

    def build_typed(
        self,
        data: Mapping[str, Any] | BaseModel | None = None,
        *,
        validate_data: bool | None = None,
    ) -> WidgetRoot:
        """The widget tree for `data`, with typed classes wherever the JSON fits them."""
        tree = self._parse(data, validate_data)
        try:
            return _ROOTS.validate_python(tree)
        except ValidationError as exc:
            raise self._not_a_widget(exc) from exc

    @deprecated("WidgetTemplate.build_basic is deprecated. Use WidgetTemplate.build instead.")
    def build_basic(self, data: Mapping[str, Any] | BaseModel | None = None) -> BasicRoot:
        """The tree of a template whose root is `Basic`, as a `BasicRoot`.

        Deprecated, as in openai-chatkit: `build` gives any root, `Basic` included.
        """
        tree = self._parse(data, None)
        try:
            return BasicRoot.model_validate(tree)
        except ValidationError as exc:
            raise self._not_a_widget(exc) from exc

    def _check(self, values: dict[str, Any]) -> None:
        if self._validator is None:
            return
        try:
            # (jsonschema reads JSON: models and datetimes nested in the data as their JSON.)
            instance = to_jsonable_python(values)
        except ValueError as exc:  # pydantic_core's serialization error
            raise WidgetDataError(self.name, [("", f"cannot be read as JSON: {exc}")]) from exc
        # (A set: one error per missing field, each naming all of them.)
        problems = sorted(
            {
                problem
                for error in self._validator.iter_errors(instance)
                for problem in _problems(error)
            }
        )
        if problems:
            raise WidgetDataError(self.name, problems)

    def _parse(self, data: Mapping[str, Any] | BaseModel | None, validate_data: bool | None) -> Any:
        rendered = self.render(data, validate_data=validate_data)
        try:
            return json.loads(rendered)
        except json.JSONDecodeError as exc:
            start = max(exc.pos - 30, 0)
            raise WidgetTemplateError(
                f"widget {self.name!r} rendered invalid JSON ({exc.msg} at line {exc.lineno} "
                f"column {exc.colno}, near {rendered[start : exc.pos + 30]!r})"
            ) from exc

    def _not_a_widget(self, exc: ValidationError) -> WidgetTemplateError:
        return WidgetTemplateError(
            f"widget {self.name!r} rendered JSON that is not a widget: {exc}"
        )

    def __repr__(self) -> str:
        return f"WidgetTemplate(name={self.name!r}, version={self.version!r})"


def _normalize(data: Mapping[str, Any] | BaseModel | None) -> dict[str, Any]:
    """The template's variables. A model is dumped as the reference dumps it (Python
    values: a datetime stays a datetime); models nested in a mapping stay models,
    which the template reads by attribute."""
    if data is None:
        return {}
    if isinstance(data, BaseModel):
        dumped: dict[str, Any] = data.model_dump()
        return dumped
    if isinstance(data, Mapping):
        return dict(data)
    raise TypeError(f"widget data must be a mapping or a pydantic model, not {type(data).__name__}")


def _missing_field(error: UndefinedError, values: dict[str, Any]) -> tuple[str, str]:
    """`(field, message)` for a value the template used but the data lacks."""
    if not isinstance(error, _UndefinedAt) or error.name is None:
        return ("", str(error))  # from a template compiled elsewhere: Jinja's own words
    if error.obj is missing:
        return (error.name, "is missing (the template uses it)")
    parent = _path_of(error.obj, values)
    if parent is None:  # an object the template made itself
        return (error.name, f"is missing ({error})")
    return (_join(parent, error.name), "is missing (the template uses it)")


def _path_of(target: Any, values: dict[str, Any]) -> str | None:
    """The path of `target` (by identity) in the data, or None if it is not in it."""
    stack: list[tuple[str, Any]] = [("", values)]
    seen: set[int] = set()
    while stack:
        path, node = stack.pop()
        if node is target:
            return path
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Mapping):
            stack.extend((_join(path, str(key)), value) for key, value in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{path}[{index}]", value) for index, value in enumerate(node))
        elif isinstance(node, BaseModel):
            stack.extend((_join(path, name), value) for name, value in node.__dict__.items())
    return None
