"""Workflow config at the boundary: ``--config`` overrides typed by the schema.

Snakemake parses a nested ``--config 'training={stage1: {steps: 10}}'`` with YAML's base loader,
so every nested value arrives as a string ("10") and the schema rejects it. ``coerce_overrides``
walks the config beside the schema and turns a string into the number, boolean or null YAML
reads from it, only where the schema does not allow a string there (labels stay strings).
"""
from __future__ import annotations

import yaml

__all__ = ["coerce_overrides"]

_SCALARS = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None)}


def _resolve(node: dict, root: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        target = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _allowed(node: dict, root: dict) -> tuple[list[str], list]:
    """The JSON types and the fixed words (``const``, ``enum``) a schema node allows."""
    node = _resolve(node, root)
    kinds = node.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    words = ([node["const"]] if "const" in node else []) + list(node.get("enum", []))
    for option in node.get("oneOf", []) + node.get("anyOf", []):
        more_kinds, more_words = _allowed(option, root)
        kinds, words = kinds + more_kinds, words + more_words
    return kinds, words


def _scalar(text: str):
    """What a string says: an int, a float (1e-3 too, which YAML 1.1 keeps a string), or YAML."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _coerce(value, node: dict, root: dict):
    node = _resolve(node, root)
    if isinstance(value, str):
        kinds, words = _allowed(node, root)
        wanted = tuple(t for k in kinds if k in _SCALARS
                       for t in (_SCALARS[k] if isinstance(_SCALARS[k], tuple) else (_SCALARS[k],)))
        if not wanted or "string" in kinds or value in words:
            return value
        parsed = _scalar(value)
        if isinstance(parsed, bool) and bool not in wanted:
            return value
        return parsed if isinstance(parsed, wanted) else value
    if isinstance(value, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        return {k: _coerce(v, props[k] if k in props else extra if isinstance(extra, dict)
                           else {}, root) for k, v in value.items()}
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_coerce(v, node["items"], root) for v in value]
    return value


def coerce_overrides(config: dict, schema: dict) -> dict:
    """``config`` with the strings typed where ``schema`` wants a number, boolean or null."""
    return _coerce(config, schema, schema)
