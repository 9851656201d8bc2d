"""The configuration reference (docs/configuration.md), generated from the configuration model
itself, so it cannot drift: every key with its dotted path, type, default and description.

    vigil config reference > docs/configuration.md   (a test checks the file is current)
"""

from __future__ import annotations

import json
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

_INTRO = """# Configuration reference

Generated from the configuration model by `vigil config reference` (a test checks this file is
current). One tree for every command: a YAML file (`--config`) for any part of it, then
`VIGIL_*` environment variables with `__` between levels (`VIGIL_WINDOW__SECONDS=5`,
`VIGIL_SERVE__BEARER_TOKEN=...`), which win; `vigil serve`'s flags override its `serve` section.
Unknown keys are errors at every level, and the error names the dotted path
(`window.secnds: Extra inputs are not permitted`). `vigil config show` prints the effective
configuration.
"""


def reference() -> str:
    """The reference as Markdown: one table per section, in the tree's order."""
    from detector.config import VigilConfig

    out = [_INTRO]
    sections: list[tuple[str, type[BaseModel]]] = []
    top_rows: list[tuple[str, FieldInfo]] = []
    for name, info in VigilConfig.model_fields.items():
        model = _model_of(info.annotation)
        if model is not None:
            sections.append((name, model))
        else:
            top_rows.append((name, info))
    if top_rows:
        out.append(_table("(top level)", [(n, i) for n, i in top_rows]))
    for name, model in sections:
        _section(name, model, out)
    return "\n".join(out).rstrip() + "\n"


def _section(path: str, model: type[BaseModel], out: list[str]) -> None:
    rows: list[tuple[str, FieldInfo]] = []
    subs: list[tuple[str, type[BaseModel]]] = []
    for name, info in model.model_fields.items():
        sub = _model_of(info.annotation)
        if sub is not None and get_origin(info.annotation) is None:
            subs.append((f"{path}.{name}", sub))
        else:
            rows.append((name, info))
    doc = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
    out.append(_table(path, rows, doc))
    for sub_path, sub in subs:
        _section(sub_path, sub, out)
    for name, info in model.model_fields.items():  # lists of models: their items' keys
        item = _item_model(info.annotation)
        if item is not None:
            _section(f"{path}.{name}[]", item, out)


def _table(path: str, rows: list[tuple[str, FieldInfo]], doc: str = "") -> str:
    lines = [f"## `{path}`", ""]
    if doc and not doc.startswith(">>>"):
        lines += [doc, ""]
    lines += ["| key | type | default | what it does |", "|---|---|---|---|"]
    for name, info in rows:
        lines.append(f"| `{name}` | {_type(info.annotation)} | {_default(info)} | "
                     f"{(info.description or '').replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _model_of(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    return None


def _item_model(tp: Any) -> type[BaseModel] | None:
    if get_origin(tp) is list:
        (arg,) = get_args(tp) or (None,)
        return _model_of(arg)
    return None


def _type(tp: Any) -> str:
    text = getattr(tp, "__name__", None) if get_origin(tp) is None else None
    if text is None:
        text = str(tp).replace("typing.", "").replace("pathlib.", "").replace("pydantic.types.", "")
    return f"`{text}`".replace("|", "or")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, SecretStr):
        return "(secret)"
    if value is None:
        return "none"
    try:
        text = json.dumps(value, default=str)
    except TypeError:
        text = str(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"`{text}`".replace("|", "/")
