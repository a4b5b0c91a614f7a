"""HTTP routes, one module per audience. Sync routes run in the thread pool, so model inference and
database calls never block the event loop."""

from fastapi import APIRouter

from service.routes import admin, codes, ops, reviews

router = APIRouter()
for module in (ops, codes, reviews, admin):
    router.include_router(module.router)
