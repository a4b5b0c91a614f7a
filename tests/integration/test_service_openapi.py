"""The OpenAPI document describes every operation: a summary from the route's docstring, an example for
each request body and each successful response, and the errors an authenticated caller can meet."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fhir.resources.R4B.bundle import Bundle
from pydantic import BaseModel

from service import fhir
from service.app import create_app
from service.settings import Settings

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The app, never started: the document needs no model."""
    folder: Path = tmp_path_factory.mktemp("openapi")
    return create_app(Settings(database_url=f"sqlite:///{folder / 'coder.db'}", models_dir=str(folder / "models")))


@pytest.fixture(scope="module")
def spec(app: FastAPI) -> dict:
    return app.openapi()


def _operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [(method.upper(), path, op) for path, item in spec["paths"].items() for method, op in item.items()]


def _routes(app: FastAPI) -> dict[tuple[str, str], APIRoute]:
    return {(method, ctx.path): ctx.original_route for ctx in iter_route_contexts(app.routes)
            if isinstance(ctx.original_route, APIRoute) for method in ctx.methods}


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = spec["components"]["schemas"][name]
    return schema


def _has_example(spec: dict, media: dict) -> bool:
    if media.get("example") is not None or media.get("examples"):
        return True
    schema = _resolve(spec, media.get("schema", {}))
    return bool(schema.get("examples")) or schema.get("example") is not None


def test_the_document_lists_the_operations_of_the_app(app: FastAPI, spec: dict) -> None:
    assert len(_operations(spec)) >= 20
    assert {(m, p) for m, p, _ in _operations(spec)} == set(_routes(app))


def test_every_operation_is_summarised_by_its_docstring(app: FastAPI, spec: dict) -> None:
    routes = _routes(app)
    for method, path, op in _operations(spec):
        doc = inspect.getdoc(routes[method, path].endpoint)
        assert doc, f"{method} {path}: the route has no docstring"
        assert "\n" not in doc, f"{method} {path}: a route docstring is one line (it is the summary)"
        assert op.get("summary") == doc, f"{method} {path}: summary {op.get('summary')!r} is not the docstring"


def test_every_request_body_has_an_example(spec: dict) -> None:
    bodies = 0
    for method, path, op in _operations(spec):
        body = op.get("requestBody")
        if body is None:
            continue
        bodies += 1
        assert body["content"], f"{method} {path}: a request body without a media type"
        for media_type, media in body["content"].items():
            assert _has_example(spec, media), f"{method} {path}: no example for the {media_type} request body"
    assert bodies >= 5


def test_every_successful_response_has_an_example(spec: dict) -> None:
    missing = []
    for method, path, op in _operations(spec):
        successes = {status: r for status, r in op["responses"].items() if status.startswith("2")}
        assert successes, f"{method} {path}: no successful response documented"
        for status, response in successes.items():
            content = response.get("content")
            if content is None:
                assert status == "204", f"{method} {path}: {status} has no content"
                continue
            missing += [f"{method} {path} {status} {media_type}" for media_type, media in content.items()
                        if not _has_example(spec, media)]
    assert not missing, "no example: " + ", ".join(missing)


def test_authenticated_operations_document_keys_and_their_errors(spec: dict) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}
    for method, path, op in _operations(spec):
        if (method, path) in PUBLIC:
            assert "security" not in op, f"{method} {path} is public"
            continue
        assert {name for requirement in op.get("security", []) for name in requirement} == set(schemes), (
            f"{method} {path}: does not say it takes an API key")
        for status in ("401", "403"):
            error = op["responses"].get(status, {}).get("content", {}).get("application/json", {})
            assert error.get("schema", {}).get("$ref", "").endswith("/ErrorResponse"), f"{method} {path} {status}"


def _examples_of(model: type[BaseModel]) -> list:
    extra = model.model_config.get("json_schema_extra") or {}
    return extra.get("examples", []) if isinstance(extra, dict) else []


def test_the_examples_are_valid_requests_and_responses(app: FastAPI, spec: dict) -> None:
    checked = 0
    for route in _routes(app).values():
        models = [route.response_model, *(f.field_info.annotation for f in route.dependant.body_params)]
        for model in models:
            if not (inspect.isclass(model) and issubclass(model, BaseModel)):
                continue
            for example in _examples_of(model):
                # by_name: a response example shows a field under its output name, not its input alias.
                model.model_validate(example, by_name=True)
                checked += 1
    assert checked >= 15
    fhir_body = spec["paths"]["/fhir/r4/DocumentReference/$suggest"]["post"]["requestBody"]
    for media in fhir_body["content"].values():
        for example in media["examples"].values():
            note = fhir.document_text(example["value"])
            assert note.text.strip() and note.subject is not None
    bundle = spec["paths"]["/fhir/r4/DocumentReference/$suggest"]["post"]["responses"]["200"]
    Bundle.model_validate(bundle["content"]["application/fhir+json"]["example"])
