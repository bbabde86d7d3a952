"""Widget component models: the tree a `WidgetItem` carries.

Wire models like the rest of `chatkit_asgi.types`, so they live here: the item
and event models use them, and `chatkit_asgi.widgets` (templates, diffing,
streaming) builds on them. `chatkit_asgi.widgets` and
`chatkit_asgi.widgets.components` re-export every name, as the same objects.

Class names and field names match the ChatKit wire format (camelCase, as the UI
reads them). Two behaviours differ from a plain pydantic model and are what the
UI expects:

* `None` is never written inside a widget tree, whether or not the caller asks
  for `exclude_none` (an unset prop and a `null` prop are not the same thing to
  the renderer). The one exception is a `children` key, which is kept as given.
* `type` is always written, even under `exclude_defaults` / `exclude_unset`.

Validation of a widget dict picks the typed class when the dict validates as one
and falls back to `DynamicWidgetComponent` / `DynamicWidgetRoot` (which keep any
extra props) when it does not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, ForwardRef, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from typing_extensions import NotRequired, TypedDict, get_type_hints, is_typeddict

from ..actions import ActionConfig
from .icons import IconName

__all__ = [
    "Alignment",
    "AreaSeries",
    "Badge",
    "BarSeries",
    "BasicRoot",
    "Border",
    "Borders",
    "Box",
    "BoxBase",
    "Button",
    "Caption",
    "CaptionSize",
    "Card",
    "CardAction",
    "Chart",
    "Checkbox",
    "Col",
    "ControlSize",
    "ControlVariant",
    "CurveType",
    "DatePicker",
    "Divider",
    "DynamicWidgetComponent",
    "DynamicWidgetRoot",
    "EditableProps",
    "Form",
    "Icon",
    "IconSize",
    "Image",
    "Input",
    "Justification",
    "Label",
    "LineSeries",
    "ListView",
    "ListViewItem",
    "Markdown",
    "MinMax",
    "RadioGroup",
    "RadioOption",
    "RadiusValue",
    "Row",
    "Select",
    "SelectOption",
    "Series",
    "Spacer",
    "Spacing",
    "StrictWidgetComponent",
    "StrictWidgetRoot",
    "Text",
    "TextAlign",
    "TextSize",
    "Textarea",
    "ThemeColor",
    "Title",
    "TitleSize",
    "Transition",
    "WidgetComponent",
    "WidgetComponentBase",
    "WidgetIcon",
    "WidgetRoot",
    "WidgetStatus",
    "WidgetStatusWithFavicon",
    "WidgetStatusWithIcon",
    "XAxisConfig",
]

WidgetIcon = IconName
"""An icon name a widget can show."""

# ---------------------------------------------------------------------------
# Token aliases
# ---------------------------------------------------------------------------

RadiusValue = Literal[
    "2xs", "xs", "sm", "md", "lg", "xl", "2xl", "3xl", "4xl", "full", "100%", "none"
]
"""Corner radius tokens."""

TextAlign = Literal["start", "center", "end"]
"""Horizontal text alignment."""

TextSize = Literal["xs", "sm", "md", "lg", "xl"]
"""Body text sizes."""

IconSize = Literal["xs", "sm", "md", "lg", "xl", "2xl", "3xl"]
"""Icon sizes."""

TitleSize = Literal["sm", "md", "lg", "xl", "2xl", "3xl", "4xl", "5xl"]
"""Title sizes."""

CaptionSize = Literal["sm", "md", "lg"]
"""Caption sizes."""

Alignment = Literal["start", "center", "end", "baseline", "stretch"]
"""Cross-axis (flex `align-items`) alignment."""

Justification = Literal["start", "center", "end", "between", "around", "evenly", "stretch"]
"""Main-axis (flex `justify-content`) distribution."""

ControlVariant = Literal["solid", "soft", "outline", "ghost"]
"""Visual variants of buttons and form controls."""

ControlSize = Literal["3xs", "2xs", "xs", "sm", "md", "lg", "xl", "2xl", "3xl"]
"""Sizes of buttons and form controls."""

CurveType = Literal[
    "basis",
    "basisClosed",
    "basisOpen",
    "bumpX",
    "bumpY",
    "bump",
    "linear",
    "linearClosed",
    "natural",
    "monotoneX",
    "monotoneY",
    "monotone",
    "step",
    "stepBefore",
    "stepAfter",
]
"""How line and area series join their points."""

_FontWeight = Literal["normal", "medium", "semibold", "bold"]
_Direction = Literal["row", "col"]
_Theme = Literal["light", "dark"]
_GutterSize = Literal["2xs", "xs", "sm", "md", "lg", "xl"]

# ---------------------------------------------------------------------------
# Plain-data props (TypedDicts)
# ---------------------------------------------------------------------------


class ThemeColor(TypedDict):
    """A color per theme: `{"light": ..., "dark": ...}`."""

    dark: str
    light: str


class Spacing(TypedDict):
    """Per-side spacing (padding or margin): spacing units or CSS lengths."""

    top: NotRequired[float | str]
    right: NotRequired[float | str]
    bottom: NotRequired[float | str]
    left: NotRequired[float | str]
    x: NotRequired[float | str]
    y: NotRequired[float | str]


class Border(TypedDict):
    """One border: width in px, optional color token/CSS color and line style."""

    size: int
    color: NotRequired[str | ThemeColor]
    style: NotRequired[
        Literal["solid", "dashed", "dotted", "double", "groove", "ridge", "inset", "outset"]
    ]


class Borders(TypedDict):
    """Borders per side; each a width in px or a `Border`."""

    top: NotRequired[int | Border]
    right: NotRequired[int | Border]
    bottom: NotRequired[int | Border]
    left: NotRequired[int | Border]
    x: NotRequired[int | Border]
    y: NotRequired[int | Border]


class MinMax(TypedDict):
    """Inclusive integer bounds."""

    min: NotRequired[int]
    max: NotRequired[int]


class EditableProps(TypedDict):
    """Makes a `Text` editable in place, as the form field `name`."""

    name: str
    autoFocus: NotRequired[bool]
    autoSelect: NotRequired[bool]
    autoComplete: NotRequired[str]
    allowAutofillExtensions: NotRequired[bool]
    pattern: NotRequired[str]
    placeholder: NotRequired[str]
    required: NotRequired[bool]


class WidgetStatusWithFavicon(TypedDict):
    """A status line led by a favicon image."""

    text: str
    favicon: NotRequired[str]
    frame: NotRequired[bool]


class WidgetStatusWithIcon(TypedDict):
    """A status line led by an icon."""

    text: str
    icon: NotRequired[WidgetIcon]


WidgetStatus = WidgetStatusWithFavicon | WidgetStatusWithIcon
"""The status line shown above a `Card` or `ListView`."""


class CardAction(TypedDict):
    """A footer button of a `Card` (confirm or cancel)."""

    label: str
    action: ActionConfig


class SelectOption(TypedDict):
    """One option of a `Select`."""

    value: str
    label: str
    disabled: NotRequired[bool]
    description: NotRequired[str]


class RadioOption(TypedDict):
    """One option of a `RadioGroup`."""

    label: str
    value: str
    disabled: NotRequired[bool]


class XAxisConfig(TypedDict):
    """The x axis of a `Chart`: which data key it shows, and how."""

    dataKey: str
    hide: NotRequired[bool]
    labels: NotRequired[dict[str, str]]


# ---------------------------------------------------------------------------
# Serialization helpers
# ---------------------------------------------------------------------------


def _drop_none(value: Any) -> Any:
    """`value` without `None` dict entries or list elements, at any depth.

    A `children` key is kept even when it is `None` (the wire contract of the
    reference implementation, which the UI is written against).
    """
    if isinstance(value, dict):
        return {
            k: _drop_none(v) if isinstance(v, (dict, list)) else v
            for k, v in value.items()
            if v is not None or k == "children"
        }
    if isinstance(value, list):
        return [_drop_none(v) if isinstance(v, (dict, list)) else v for v in value if v is not None]
    return value


def _holds_loose_data(annotation: Any, seen: frozenset[type] = frozenset()) -> bool:
    """Whether a value of this type can carry untyped data (and so nested `None`s).

    Typed content never does: pydantic's own `exclude_none` already cleans it.
    Components clean themselves, so they do not count either.
    """
    if annotation is Any or annotation is object:
        return True
    if isinstance(annotation, (str, ForwardRef)):
        # Only references to the component unions are left unresolved here.
        return False
    origin = get_origin(annotation)
    if origin is Literal:
        return False
    # (On Python 3.10 `list[int]` passes isinstance(..., type): check the origin first.)
    if origin is None and isinstance(annotation, type):
        if annotation in seen or issubclass(annotation, WidgetComponentBase):
            return False
        seen = seen | {annotation}
        if issubclass(annotation, BaseModel):
            return annotation.model_config.get("extra") == "allow" or any(
                _holds_loose_data(f.annotation, seen) for f in annotation.model_fields.values()
            )
        if is_typeddict(annotation):
            return any(_holds_loose_data(t, seen) for t in get_type_hints(annotation).values())
        return False
    return any(_holds_loose_data(arg, seen) for arg in get_args(annotation))


# ---------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------


class WidgetComponentBase(BaseModel):
    """Fields every component has, and the serialization every component shares."""

    key: str | None = None
    """React-style key: keeps a component's state across updates."""
    id: str | None = None
    """Addresses the component in `widget.component.updated` / streaming text events."""
    type: str

    _loose_keys: ClassVar[tuple[str, ...]] = ()
    """Fields (besides `children`) whose values may hold untyped data to clean."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Work out once per class which fields need a deep `None` sweep."""
        super().__pydantic_init_subclass__(**kwargs)
        cls._loose_keys = tuple(
            name
            for name, field in cls.model_fields.items()
            if name != "children" and _holds_loose_data(field.annotation)
        )

    def _serialize(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        if info.exclude_none:
            # pydantic already dropped None props, nested components cleaned
            # themselves: only untyped values (action payloads, dynamic props)
            # can still hide a None.
            for key in self._loose_keys:
                value = data.get(key)
                if isinstance(value, (dict, list)):
                    data[key] = _drop_none(value)
            extra = self.__pydantic_extra__
            if extra:
                for key in extra:
                    value = data.get(key)
                    if isinstance(value, (dict, list)):
                        data[key] = _drop_none(value)
        else:
            data = {
                k: v if k == "children" or not isinstance(v, (dict, list)) else _drop_none(v)
                for k, v in data.items()
                if v is not None or k == "children"
            }
        data["type"] = self.type
        return data

    # Without a return annotation pydantic describes the output with the model's
    # own schema (an `Any` annotation would make it an untyped `{}`).
    del _serialize.__annotations__["return"]
    _serialize = model_serializer(mode="wrap")(_serialize)


class Text(WidgetComponentBase):
    """Body text, optionally streamed or editable in place."""

    type: Literal["Text"] = Field(default="Text", frozen=True)
    value: str
    streaming: bool | None = None
    italic: bool | None = None
    lineThrough: bool | None = None
    color: str | ThemeColor | None = None
    weight: _FontWeight | None = None
    width: float | str | None = None
    size: TextSize | None = None
    textAlign: TextAlign | None = None
    truncate: bool | None = None
    minLines: int | None = None
    maxLines: int | None = None
    editable: Literal[False] | EditableProps | None = None


class Title(WidgetComponentBase):
    """Headline text."""

    type: Literal["Title"] = Field(default="Title", frozen=True)
    value: str
    color: str | ThemeColor | None = None
    weight: _FontWeight | None = None
    size: TitleSize | None = None
    textAlign: TextAlign | None = None
    truncate: bool | None = None
    maxLines: int | None = None


class Caption(WidgetComponentBase):
    """Small supporting text."""

    type: Literal["Caption"] = Field(default="Caption", frozen=True)
    value: str
    color: str | ThemeColor | None = None
    weight: _FontWeight | None = None
    size: CaptionSize | None = None
    textAlign: TextAlign | None = None
    truncate: bool | None = None
    maxLines: int | None = None


class BarSeries(BaseModel):
    """Bars drawn from the numeric `dataKey` of each row; same `stack` id stacks."""

    type: Literal["bar"] = Field(default="bar", frozen=True)
    label: str | None
    dataKey: str
    stack: str | None = None
    color: str | ThemeColor | None = None


class AreaSeries(BaseModel):
    """A filled area drawn from the numeric `dataKey` of each row."""

    type: Literal["area"] = Field(default="area", frozen=True)
    label: str | None
    dataKey: str
    stack: str | None = None
    color: str | ThemeColor | None = None
    curveType: CurveType | None = None


class LineSeries(BaseModel):
    """A line drawn from the numeric `dataKey` of each row."""

    type: Literal["line"] = Field(default="line", frozen=True)
    label: str | None
    dataKey: str
    color: str | ThemeColor | None = None
    curveType: CurveType | None = None


Series = Annotated[BarSeries | AreaSeries | LineSeries, Field(discriminator="type")]
"""Any chart series."""


class Chart(WidgetComponentBase):
    """A bar / line / area chart over rows of `data`."""

    type: Literal["Chart"] = Field(default="Chart", frozen=True)
    data: list[dict[str, str | int | float]]
    series: list[Series]
    xAxis: str | XAxisConfig
    """The data key of the x axis, or its full configuration."""
    showYAxis: bool | None = None
    showLegend: bool | None = None
    showTooltip: bool | None = None
    barGap: int | None = None
    barCategoryGap: int | None = None
    flex: int | str | None = None
    height: int | str | None = None
    width: int | str | None = None
    size: int | str | None = None
    minHeight: int | str | None = None
    minWidth: int | str | None = None
    minSize: int | str | None = None
    maxHeight: int | str | None = None
    maxWidth: int | str | None = None
    maxSize: int | str | None = None
    aspectRatio: float | str | None = None


class Badge(WidgetComponentBase):
    """A small label for a status or category."""

    type: Literal["Badge"] = Field(default="Badge", frozen=True)
    label: str
    color: Literal["secondary", "success", "danger", "warning", "info", "discovery"] | None = None
    variant: Literal["solid", "soft", "outline"] | None = None
    size: Literal["sm", "md", "lg"] | None = None
    pill: bool | None = None


class Markdown(WidgetComponentBase):
    """Rendered markdown, optionally streamed."""

    type: Literal["Markdown"] = Field(default="Markdown", frozen=True)
    value: str
    streaming: bool | None = None


class BoxBase(BaseModel):
    """Layout props shared by the flex containers (`Box`, `Row`, `Col`, `Form`)."""

    children: list[WidgetComponent] | None = None
    align: Alignment | None = None
    justify: Justification | None = None
    wrap: Literal["nowrap", "wrap", "wrap-reverse"] | None = None
    flex: int | str | None = None
    gap: int | str | None = None
    height: float | str | None = None
    width: float | str | None = None
    size: float | str | None = None
    minHeight: int | str | None = None
    minWidth: int | str | None = None
    minSize: int | str | None = None
    maxHeight: int | str | None = None
    maxWidth: int | str | None = None
    maxSize: int | str | None = None
    padding: float | str | Spacing | None = None
    margin: float | str | Spacing | None = None
    border: int | Border | Borders | None = None
    radius: RadiusValue | None = None
    background: str | ThemeColor | None = None
    aspectRatio: float | str | None = None


# Layout containers list the layout props first on the wire (as the reference
# does), hence BoxBase after WidgetComponentBase in the bases.
class Box(WidgetComponentBase, BoxBase):
    """A flex container in either direction."""

    type: Literal["Box"] = Field(default="Box", frozen=True)
    direction: _Direction | None = None


class Row(WidgetComponentBase, BoxBase):
    """A horizontal flex container."""

    type: Literal["Row"] = Field(default="Row", frozen=True)


class Col(WidgetComponentBase, BoxBase):
    """A vertical flex container."""

    type: Literal["Col"] = Field(default="Col", frozen=True)


class Form(WidgetComponentBase, BoxBase):
    """A flex container whose fields are sent with `onSubmitAction`."""

    type: Literal["Form"] = Field(default="Form", frozen=True)
    onSubmitAction: ActionConfig | None = None
    direction: _Direction | None = None


class Divider(WidgetComponentBase):
    """A horizontal rule."""

    type: Literal["Divider"] = Field(default="Divider", frozen=True)
    color: str | ThemeColor | None = None
    size: int | str | None = None
    spacing: int | str | None = None
    flush: bool | None = None


class Icon(WidgetComponentBase):
    """An icon."""

    type: Literal["Icon"] = Field(default="Icon", frozen=True)
    name: WidgetIcon
    color: str | ThemeColor | None = None
    size: IconSize | None = None


class Image(WidgetComponentBase):
    """An image with sizing and fitting props."""

    type: Literal["Image"] = Field(default="Image", frozen=True)
    src: str
    alt: str | None = None
    fit: Literal["cover", "contain", "fill", "scale-down", "none"] | None = None
    position: (
        Literal[
            "top left",
            "top",
            "top right",
            "left",
            "center",
            "right",
            "bottom left",
            "bottom",
            "bottom right",
        ]
        | None
    ) = None
    radius: RadiusValue | None = None
    frame: bool | None = None
    flush: bool | None = None
    height: int | str | None = None
    width: int | str | None = None
    size: int | str | None = None
    minHeight: int | str | None = None
    minWidth: int | str | None = None
    minSize: int | str | None = None
    maxHeight: int | str | None = None
    maxWidth: int | str | None = None
    maxSize: int | str | None = None
    margin: int | str | Spacing | None = None
    background: str | ThemeColor | None = None
    aspectRatio: float | str | None = None
    flex: int | str | None = None


class ListViewItem(WidgetComponentBase):
    """One row of a `ListView`, optionally clickable."""

    type: Literal["ListViewItem"] = Field(default="ListViewItem", frozen=True)
    children: list[WidgetComponent]
    onClickAction: ActionConfig | None = None
    gap: int | str | None = None
    align: Alignment | None = None


class ListView(WidgetComponentBase):
    """A root that lists `ListViewItem`s, with an optional "show more" limit."""

    type: Literal["ListView"] = Field(default="ListView", frozen=True)
    children: list[ListViewItem]
    limit: int | Literal["auto"] | None = None
    status: WidgetStatus | None = None
    theme: _Theme | None = None


class Button(WidgetComponentBase):
    """A button, usually wired to an action."""

    type: Literal["Button"] = Field(default="Button", frozen=True)
    submit: bool | None = None
    """Submits the enclosing form instead of running `onClickAction`."""
    label: str | None = None
    onClickAction: ActionConfig | None = None
    iconStart: WidgetIcon | None = None
    iconEnd: WidgetIcon | None = None
    style: Literal["primary", "secondary"] | None = None
    iconSize: Literal["sm", "md", "lg", "xl", "2xl"] | None = None
    color: (
        Literal[
            "primary",
            "secondary",
            "info",
            "discovery",
            "success",
            "caution",
            "warning",
            "danger",
        ]
        | None
    ) = None
    variant: ControlVariant | None = None
    size: ControlSize | None = None
    pill: bool | None = None
    uniform: bool | None = None
    block: bool | None = None
    disabled: bool | None = None


class Checkbox(WidgetComponentBase):
    """A checkbox form field."""

    type: Literal["Checkbox"] = Field(default="Checkbox", frozen=True)
    name: str
    label: str | None = None
    defaultChecked: bool | None = None
    onChangeAction: ActionConfig | None = None
    disabled: bool | None = None
    required: bool | None = None


class Spacer(WidgetComponentBase):
    """Flexible empty space that pushes its siblings apart."""

    type: Literal["Spacer"] = Field(default="Spacer", frozen=True)
    minSize: int | str | None = None


class Select(WidgetComponentBase):
    """A dropdown form field."""

    type: Literal["Select"] = Field(default="Select", frozen=True)
    name: str
    options: list[SelectOption]
    onChangeAction: ActionConfig | None = None
    placeholder: str | None = None
    defaultValue: str | None = None
    variant: ControlVariant | None = None
    size: ControlSize | None = None
    pill: bool | None = None
    block: bool | None = None
    clearable: bool | None = None
    disabled: bool | None = None
    searchable: bool | None = None


class DatePicker(WidgetComponentBase):
    """A date form field.

    Dates are kept as given (not moved to UTC): a calendar date must not shift
    with the server's timezone.
    """

    type: Literal["DatePicker"] = Field(default="DatePicker", frozen=True)
    name: str
    onChangeAction: ActionConfig | None = None
    placeholder: str | None = None
    defaultValue: datetime | None = None
    min: datetime | None = None
    max: datetime | None = None
    variant: ControlVariant | None = None
    size: ControlSize | None = None
    side: Literal["top", "bottom", "left", "right"] | None = None
    align: Literal["start", "center", "end"] | None = None
    pill: bool | None = None
    block: bool | None = None
    clearable: bool | None = None
    disabled: bool | None = None


class Input(WidgetComponentBase):
    """A single-line text form field."""

    type: Literal["Input"] = Field(default="Input", frozen=True)
    name: str
    inputType: Literal["number", "email", "text", "password", "tel", "url"] | None = None
    defaultValue: str | None = None
    required: bool | None = None
    pattern: str | None = None
    placeholder: str | None = None
    allowAutofillExtensions: bool | None = None
    autoSelect: bool | None = None
    autoFocus: bool | None = None
    disabled: bool | None = None
    variant: Literal["soft", "outline"] | None = None
    size: ControlSize | None = None
    gutterSize: _GutterSize | None = None
    pill: bool | None = None


class Label(WidgetComponentBase):
    """The label of the form field `fieldName`."""

    type: Literal["Label"] = Field(default="Label", frozen=True)
    value: str
    fieldName: str
    size: TextSize | None = None
    weight: _FontWeight | None = None
    textAlign: TextAlign | None = None
    color: str | ThemeColor | None = None


class RadioGroup(WidgetComponentBase):
    """A group of radio buttons (one form field)."""

    type: Literal["RadioGroup"] = Field(default="RadioGroup", frozen=True)
    name: str
    options: list[RadioOption] | None = None
    ariaLabel: str | None = None
    onChangeAction: ActionConfig | None = None
    defaultValue: str | None = None
    direction: _Direction | None = None
    disabled: bool | None = None
    required: bool | None = None


class Textarea(WidgetComponentBase):
    """A multi-line text form field."""

    type: Literal["Textarea"] = Field(default="Textarea", frozen=True)
    name: str
    defaultValue: str | None = None
    required: bool | None = None
    pattern: str | None = None
    placeholder: str | None = None
    autoSelect: bool | None = None
    autoFocus: bool | None = None
    disabled: bool | None = None
    variant: Literal["soft", "outline"] | None = None
    size: ControlSize | None = None
    gutterSize: _GutterSize | None = None
    rows: int | None = None
    autoResize: bool | None = None
    maxRows: int | None = None
    allowAutofillExtensions: bool | None = None


class Transition(WidgetComponentBase):
    """Animates layout changes of its single child."""

    type: Literal["Transition"] = Field(default="Transition", frozen=True)
    children: WidgetComponent | None


class Card(WidgetComponentBase):
    """The usual root: a bordered container with optional status and footer buttons."""

    type: Literal["Card"] = Field(default="Card", frozen=True)
    asForm: bool | None = None
    """Make the card a form: confirm/cancel send the values of its fields."""
    children: list[WidgetComponent]
    background: str | ThemeColor | None = None
    size: Literal["sm", "md", "lg", "full"] | None = None
    padding: float | str | Spacing | None = None
    status: WidgetStatus | None = None
    collapsed: bool | None = None
    confirm: CardAction | None = None
    cancel: CardAction | None = None
    theme: _Theme | None = None


class DynamicWidgetComponent(WidgetComponentBase):
    """A component of any `type`, with its props kept as given.

    What templates and hand-written JSON become when they do not fit a typed class.
    """

    model_config = ConfigDict(extra="allow")

    children: DynamicWidgetComponent | list[DynamicWidgetComponent] | None = None


class BasicRoot(DynamicWidgetComponent):
    """A bare root (`type: "Basic"`) holding any components."""

    type: Literal["Basic"] = Field(default="Basic", frozen=True)


class DynamicWidgetRoot(DynamicWidgetComponent):
    """A dynamic component that is a root (`Card`, `ListView` or `Basic`)."""

    type: Literal["Card", "ListView", "Basic"]


StrictWidgetComponent = Annotated[
    Text
    | Title
    | Caption
    | Chart
    | Badge
    | Markdown
    | Box
    | Row
    | Col
    | Divider
    | Icon
    | Image
    | ListViewItem
    | Button
    | Checkbox
    | Spacer
    | Select
    | DatePicker
    | Form
    | Input
    | Label
    | RadioGroup
    | Textarea
    | Transition,
    Field(discriminator="type"),
]
"""Any typed (non-root) component, chosen by `type`."""

StrictWidgetRoot = Annotated[Card | ListView | BasicRoot, Field(discriminator="type")]
"""Any typed root, chosen by `type`."""

# Plain (smart-mode) unions: a dict that validates as a typed class becomes one,
# anything else falls back to the dynamic class.
WidgetComponent = StrictWidgetComponent | DynamicWidgetComponent
"""Any component: typed when it validates as one, dynamic otherwise."""

WidgetRoot = StrictWidgetRoot | DynamicWidgetRoot
"""Any root widget: typed when it validates as one, dynamic otherwise."""

for _model in (Box, Row, Col, Form, BoxBase, ListViewItem, ListView, Transition, Card):
    _model.model_rebuild()
del _model
