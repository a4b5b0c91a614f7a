"""`python -m service`: serve the API with uvicorn (settings from CODER_* environment variables)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from models.errors import ArtifactError
from service.app import create_app
from service.settings import get_settings


def main() -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    except ArtifactError as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
