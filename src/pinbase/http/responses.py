"""The JSON answer every route gives: the content encoded by orjson."""

from __future__ import annotations

import orjson
from starlette.responses import Response


def json_response(content: object, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")
