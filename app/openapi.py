"""/openapi.json says what the service does: FastAPI's document, with two things corrected.

- FastAPI documents a 422 for every operation with parameters; this service answers
  invalid input with a 400 (app/errors.py, docs/http-api.md#errors), which each route
  documents itself.
- Every error is `{"message"}` in JSON, also where the success is not JSON.
- Every operation with an id in its path answers 404 for an id that is not one
  (app/fields.py `IdPath`), whether or not the route itself can find nothing.
- `GET /api/franchise/{userId}` and `DELETE /api/franchise/{franchiseId}` are one URL
  template: OpenAPI forbids two path items that differ only in parameter names, and a
  405 lists the methods of the URL, both of them. The document merges such path items
  and names the differing parameter `id`; each operation's parameter keeps its own
  description. The routes, and /api/docs, keep their names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

_PARAMETER = re.compile(r"\{([^}]*)\}")
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_NO_SUCH_ID = "No such thing: an id in the path that names nothing, or is not a plain number"


def operation_id(route: APIRoute) -> str:
    """The endpoint's function name: stable, readable, and what links refer to."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    """Serve the corrected document at `app.openapi_url` (built once, on first use)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            _drop_validation_422(document)
            _path_ids_answer_404(document)
            _errors_are_json(document)
            _merge_same_templates(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        operation
        for item in document.get("paths", {}).values()
        for method, operation in item.items()
        if method in _METHODS
    ]


def _drop_validation_422(document: dict[str, Any]) -> None:
    for operation in _operations(document):
        operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in _VALIDATION_SCHEMAS:
        schemas.pop(name, None)


def _path_ids_answer_404(document: dict[str, Any]) -> None:
    for operation in _operations(document):
        if any(p.get("in") == "path" for p in operation.get("parameters", [])):
            operation.setdefault("responses", {}).setdefault(
                "404",
                {
                    "description": _NO_SUCH_ID,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    },
                },
            )


def _errors_are_json(document: dict[str, Any]) -> None:
    """An error is JSON whatever the route sends on success (a Markdown report, a page):
    FastAPI files every response of a route under the route's media type."""
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for operation in _operations(document):
        for response in operation.get("responses", {}).values():
            content = response.get("content", {})
            for media_type in [m for m, c in content.items() if c.get("schema") == error_body]:
                if media_type != "application/json":
                    content["application/json"] = content.pop(media_type)


def _merge_same_templates(document: dict[str, Any]) -> None:
    paths: dict[str, dict[str, Any]] = document.get("paths", {})
    shapes: dict[str, list[str]] = {}
    for template in paths:
        shapes.setdefault(_PARAMETER.sub("{}", template), []).append(template)
    renamed: dict[str, dict[str, str]] = {}  # operationId -> old parameter name -> new
    for templates in shapes.values():
        if len(templates) < 2:
            continue
        names = [_PARAMETER.findall(t) for t in templates]
        merged_names = [
            group[0] if len(set(group)) == 1 else "id" for group in zip(*names, strict=True)
        ]
        if len(set(merged_names)) < len(merged_names):
            raise ValueError(f"{templates}: name their parameters alike but for one")
        merged = templates[0]
        for old, new in zip(names[0], merged_names, strict=True):
            merged = merged.replace("{" + old + "}", "{" + new + "}", 1)
        item: dict[str, Any] = {}
        for template, old_names in zip(templates, names, strict=True):
            mapping = dict(zip(old_names, merged_names, strict=True))
            for method, operation in paths[template].items():
                if method in item:
                    raise ValueError(f"{method.upper()} {merged}: two routes serve it")
                for parameter in operation.get("parameters", []):
                    if parameter.get("in") == "path" and parameter["name"] in mapping:
                        old = parameter["name"]
                        parameter["name"] = mapping[old]
                        parameter.setdefault("description", f"the {old}")
                renamed[operation.get("operationId", "")] = mapping
                item[method] = operation
        # The merged item takes the place of the first; the document keeps its order.
        ordered = {(merged if t == templates[0] else t): v for t, v in paths.items()}
        ordered[merged] = item
        paths.clear()
        paths.update((t, v) for t, v in ordered.items() if t not in templates[1:])
    for operation in _operations(document):
        for response in operation.get("responses", {}).values():
            for link in response.get("links", {}).values():
                mapping = renamed.get(link.get("operationId", ""), {})
                parameters = link.get("parameters", {})
                link["parameters"] = {mapping.get(k, k): v for k, v in parameters.items()}
