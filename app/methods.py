"""A wrong method is a 405 whose `Allow` lists exactly what the path serves (RFC 9110, 10.2.1).

The router alone gets two cases wrong. It answers 405 from the first route whose path
matches, so where several routes share a path (GET and POST `/api/franchise`) `Allow`
names one method. And it hands `PUT /api/user/me` to `PUT /api/user/{userId}` (a 400),
while /openapi.json, like every OpenAPI reader, resolves a URL to a literal path before a
templated one: `/api/user/me` serves GET only. This middleware resolves the path the way
OpenAPI does, over every route of the app, and answers the 405 itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fastapi import APIRouter
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

_PARAMETER = re.compile(r"\{[^}]*\}")


@dataclass(slots=True)
class _Resource:
    """The routes of one path template (parameter names aside: `/a/{x}` is `/a/{y}`)."""

    rank: tuple[bool, ...]  # per segment, templated or not: literal segments match first
    patterns: list[re.Pattern[str]] = field(default_factory=list)
    methods: set[str] = field(default_factory=set)

    def matches(self, path: str) -> bool:
        return any(p.match(path) for p in self.patterns)


class ServedMethods:
    """The methods each path of the app serves, exactly as its routes declare them.

    Read from the routes as declared: the app's own and each included router's (whose
    paths carry the router's prefix). Asking FastAPI for the routes as included instead
    would build every route's handler once more per app, about 0.1 s of CPU each time.
    """

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        shapes: dict[str, _Resource] = {}
        for route in routes:
            if not isinstance(route, Route) or not route.methods:
                continue  # an included router, a mount or a websocket: no methods of its own
            template, methods = route.path_format, route.methods
            shape = _PARAMETER.sub("{}", template)
            rank = tuple(segment == "{}" for segment in shape.split("/"))
            resource = shapes.setdefault(shape, _Resource(rank))
            resource.patterns.append(route.path_regex)
            resource.methods |= methods
        self._literal = {shape: r.methods for shape, r in shapes.items() if not any(r.rank)}
        self._templated = sorted((r for r in shapes.values() if any(r.rank)), key=lambda r: r.rank)

    def of(self, path: str) -> set[str] | None:
        """The methods `path` serves; None when no route serves it (a 404)."""
        if path in self._literal:
            return self._literal[path]
        return next((r.methods for r in self._templated if r.matches(path)), None)


def allow_header(methods: set[str]) -> str:
    return ", ".join(sorted(methods))


class AllowedMethodsMiddleware:
    """405 with the exact `Allow` for a method the resolved path does not serve.

    It sits inside CORS, which answers a browser's preflight (an OPTIONS with `Origin`
    and `Access-Control-Request-Method`) before this sees it; any other OPTIONS is a 405.
    """

    def __init__(
        self, app: ASGIApp, *, routes: Sequence[BaseRoute], routers: Sequence[APIRouter]
    ) -> None:
        """`routes` are the app's, `routers` those it includes without a prefix of its own."""
        self.app = app
        # Built with the middleware stack, on the first request: every route is added by then.
        self.served = ServedMethods([*routes, *(r for router in routers for r in router.routes)])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            methods = self.served.of(_route_path(scope))
            if methods is not None and scope["method"] not in methods:
                response = JSONResponse(
                    {"message": "Method Not Allowed"}, 405, headers={"allow": allow_header(methods)}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
