"""Widget templates: `.widget` files rendered with data into widget trees.

A `.widget` file is what ChatKit's widget builder exports: JSON with a `version`
(`"1.0"`), a `name`, a `template` (a Jinja template whose output is the widget's
JSON) and a `jsonSchema` describing the data the template expects::

    template = WidgetTemplate.from_file("weather.widget")   # next to this module
    widget = template.build({"city": "Paris", "degrees": 21})

The data is checked against the schema before rendering, so missing or wrong
data fails with a `WidgetDataError` naming the field instead of a broken widget.

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

Needs the `widgets` extra (`jinja2`, `jsonschema`).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

try:
    import jsonschema
    import jsonschema.validators
    from jinja2 import StrictUndefined, Template, TemplateError, Undefined, UndefinedError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from markupsafe import Markup
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"widget templates need the 'widgets' extra: pip install 'chatkit-asgi[widgets]' ({exc})"
    ) from exc
from pydantic import BaseModel, TypeAdapter, ValidationError

from .components import DynamicWidgetRoot, WidgetRoot

__all__ = ["WidgetDataError", "WidgetTemplate", "WidgetTemplateError"]

SUPPORTED_VERSIONS = frozenset({"1.0"})

_ROOTS: TypeAdapter[WidgetRoot] = TypeAdapter(WidgetRoot)


class WidgetTemplateError(ValueError):
    """A widget template cannot be loaded, or did not render a valid widget."""


class WidgetDataError(WidgetTemplateError):
    """The data given to a widget template does not match its `jsonSchema`.

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


# Autoescaping stays on so that `tojson`, macros and `caller()` produce Markup
# (inserted as is); plain values go through `_json_finalize` (JSON escaping)
# before Jinja's own escape, which leaves Markup untouched. Jinja has no hook to
# replace its HTML escape function, hence the finalize.
_ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined,
    autoescape=True,
    finalize=_json_finalize,
    keep_trailing_newline=False,
)


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
    """

    def __init__(self, definition: Mapping[str, Any]) -> None:
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
        self._validator = _validator_for(self.data_schema, name) if schema else None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> WidgetTemplate:
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
        return cls(definition)

    def validate(self, data: Mapping[str, Any] | BaseModel | None = None) -> dict[str, Any]:
        """The data as the template sees it, checked against the `jsonSchema`.

        Raises `WidgetDataError` naming every field that is missing or wrong.
        """
        values = _normalize(data)
        if self._validator is not None:
            # (A set: one error per missing field, each naming all of them.)
            problems = sorted(
                {
                    problem
                    for error in self._validator.iter_errors(values)
                    for problem in _problems(error)
                }
            )
            if problems:
                raise WidgetDataError(self.name, problems)
        return values

    def render(self, data: Mapping[str, Any] | BaseModel | None = None) -> str:
        """The widget JSON the template writes for `data` (checked first)."""
        values = self.validate(data)
        try:
            return self.template.render(values)
        except UndefinedError as exc:
            # Only reachable without a schema, or with one that lets the value be absent.
            raise WidgetDataError(self.name, [("", str(exc))]) from exc
        except (TemplateError, ValueError) as exc:
            raise WidgetTemplateError(f"widget {self.name!r}: {exc}") from exc

    def build(self, data: Mapping[str, Any] | BaseModel | None = None) -> DynamicWidgetRoot:
        """The widget tree for `data`, as dynamic components (the reference's choice).

        Dynamic components keep every prop the template wrote, typed or not;
        use `build_typed` for typed component classes.
        """
        tree = self._parse(data)
        try:
            return DynamicWidgetRoot.model_validate(tree)
        except ValidationError as exc:
            raise self._not_a_widget(exc) from exc

    def build_typed(self, data: Mapping[str, Any] | BaseModel | None = None) -> WidgetRoot:
        """The widget tree for `data`, with typed classes wherever the JSON fits them."""
        tree = self._parse(data)
        try:
            return _ROOTS.validate_python(tree)
        except ValidationError as exc:
            raise self._not_a_widget(exc) from exc

    def _parse(self, data: Mapping[str, Any] | BaseModel | None) -> Any:
        rendered = self.render(data)
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
    if data is None:
        return {}
    if isinstance(data, BaseModel):
        dumped: dict[str, Any] = data.model_dump(mode="json")
        return dumped
    if isinstance(data, Mapping):
        return dict(data)
    raise TypeError(f"widget data must be a mapping or a pydantic model, not {type(data).__name__}")
