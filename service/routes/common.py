"""What several route modules share: the documented error responses."""

from __future__ import annotations

from service.schemas import ErrorResponse


def errors(*statuses: int) -> dict:
    """OpenAPI `responses` for these error statuses (and the 401/403 every authenticated route has)."""
    return {status: {"model": ErrorResponse} for status in sorted({401, 403, *statuses})}
