"""HTTP routes, one module per audience. Sync routes run in the thread pool, so model inference and
database calls never block the event loop."""

from fastapi import APIRouter
from fastapi.routing import APIRoute

from service.routes import admin, catalog, codes, ops, reviews

router = APIRouter()
for module in (ops, codes, reviews, catalog, admin):
    for route in module.router.routes:
        # FastAPI would title-case the function name; the one-line docstring is the summary.
        if isinstance(route, APIRoute) and route.summary is None and route.description:
            route.summary = route.description.splitlines()[0]
    router.include_router(module.router)
