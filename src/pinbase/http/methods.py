"""Which methods a path supports: `OPTIONS` answers and the `Allow` header of a 405.

Starlette matches a request against one route at a time, so a path served by two routes
(`GET` and `POST /external/api/batch/update`) would answer `OPTIONS` with 405 and list only the
first route's method in `Allow`. Here the methods of a path are gathered from every route that
matches it. Decisions:

- `OPTIONS` on a path the server has answers **204 No Content** with `Allow` (the path's methods
  and `OPTIONS`), without authentication: it reveals only what `/openapi.json` already says.
- Any other method a path lacks answers 405 with the error body and the same `Allow`.
- A path no route matches is 404 whatever the method. Under the docs' static assets the mount
  answers for every path (`GET, HEAD, OPTIONS`), whether or not the file exists.

Both are answered where Starlette reports 405 (the `HTTPException` handler in `errors.py`), so
a request with a supported method pays nothing for them.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

_STATIC = frozenset({"GET", "HEAD"})


def _route_methods(route: BaseRoute, path: str) -> frozenset[str] | None:
    """The methods `route` serves at `path`, or None when it does not serve `path`."""
    if isinstance(route, Route):
        if route.path_regex.fullmatch(path) is None:
            return None
        return frozenset(route.methods or ())
    if isinstance(route, Mount):
        if route.path_regex.fullmatch(path) is None:
            return None
        app: ASGIApp = route.app
        return _STATIC if isinstance(app, StaticFiles) else None
    return None


def path_methods(app: FastAPI, path: str) -> list[str] | None:
    """Every method of `path` including OPTIONS, sorted; None when no route serves it."""
    found: set[str] = set()
    for route in app.router.routes:
        methods = _route_methods(route, path)
        if methods is not None:
            found |= methods
    if not found:
        return None
    return sorted(found | {"OPTIONS"})
