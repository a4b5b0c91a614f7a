"""What several route modules share: the documented error responses, and the route class every router uses."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from service.schemas import ErrorResponse

# SQL's OFFSET is a 64-bit integer in both databases: a larger one would fail in the driver, with a 500.
Offset = Annotated[int, Query(ge=0, le=2**63 - 1)]


def errors(*statuses: int) -> dict:
    """OpenAPI `responses` for these error statuses (and the 401/403 every authenticated route has)."""
    return {status: {"model": ErrorResponse} for status in sorted({401, 403, *statuses})}


class JsonBodyRoute(APIRoute):
    """An APIRoute that refuses a body it cannot parse (invalid UTF-8, JSON nested too deeply to decode) the way
    it refuses malformed JSON: 422 `invalid_request`. FastAPI answers those with a bare 400 no operation documents."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                # FastAPI raises a 400 `from` the parsing error when reading the body fails; nothing else here
                # raises a 400 (a body over the size limit arrives as a 413 with no cause).
                if exc.status_code != 400 or exc.__cause__ is None:
                    raise
                if isinstance(exc.__cause__, UnicodeDecodeError):
                    problem = "not valid UTF-8"
                elif isinstance(exc.__cause__, RecursionError):
                    problem = "JSON nested too deeply"
                else:
                    problem = "not readable as JSON"
                # No `input`, and `from None`: the body and the parsing error both may hold note text.
                raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": problem}]) from None

        return route_handler
