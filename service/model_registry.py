"""The models the service knows, the one it serves, and switching between them without a restart.

The database's latest `ModelDeployment` names the serving model, so every worker of every process
agrees: the worker that takes an activation loads the model before it answers, the others pick it up
within `model_sync_seconds`. A swap replaces one reference, so a request in flight keeps the model it
started with and none fails.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from models.artifact import default_predictor, load_artifact, read_config
from models.errors import ArtifactError
from models.predictor import Predictor
from models.scorer import RuntimeScorer
from service import audit, observability
from service.auth import SYSTEM, Principal
from service.db import ModelDeployment, utcnow

logger = logging.getLogger("service.models")
DEFAULT = "default"
WARM_UP_NOTE = "Type 2 diabetes mellitus. Essential hypertension. Laparoscopic appendectomy."


@dataclass(frozen=True)
class ModelEntry:
    """An artifact the service can serve."""

    name: str
    path: Path | None  # None: the embedded default (catalogue matcher)
    kind: str
    metrics: dict


@dataclass(frozen=True)
class Serving:
    name: str
    kind: str
    path: Path | None
    metrics: dict
    predictor: Predictor


class ModelError(Exception):
    """An activation that cannot be done; `status` and `code` map it to HTTP."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class ModelRegistry:
    """Lists the model folder, serves one model, switches and rolls back."""

    def __init__(
        self, sessions: sessionmaker | None, models_dir: str | Path, startup_artifact: str | None = None,
        valid_only: bool = True, runtime: str = "auto", head_precision: str = "auto",
        batch_max_notes: int = 16, batch_wait_ms: float = 2.0,
    ) -> None:
        self.sessions = sessions
        self.runtime = runtime
        self.head_precision = head_precision
        self.batch_max_notes, self.batch_wait_ms = batch_max_notes, batch_wait_ms
        self.models_dir = Path(models_dir)
        self.startup_artifact = Path(startup_artifact) if startup_artifact else None
        self.valid_only = valid_only
        self._serving: Serving | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.load_error: str | None = None

    # --- what there is ------------------------------------------------------------------------------
    def entries(self) -> list[ModelEntry]:
        """The embedded default, the startup artifact, and every artifact folder in the model folder."""
        found = {DEFAULT: ModelEntry(DEFAULT, None, "matcher", {})}
        folders = sorted(p for p in self.models_dir.iterdir() if (p / "config.json").is_file()) \
            if self.models_dir.is_dir() else []
        if self.startup_artifact is not None:
            folders.append(self.startup_artifact)
        for path in folders:
            try:
                kind = read_config(path)["kind"]
            except (ArtifactError, KeyError):
                kind = "unreadable"
            metrics_path = path / "metrics.json"
            try:
                metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
            except (OSError, ValueError):
                metrics = {}
            found[path.name] = ModelEntry(path.name, path, kind, metrics)
        return list(found.values())

    def entry(self, name: str) -> ModelEntry:
        for entry in self.entries():
            if entry.name == name:
                return entry
        raise ModelError(404, "model_not_found", f"no model named {name!r} in {self.models_dir}")

    # --- what is served -----------------------------------------------------------------------------
    @property
    def serving(self) -> Serving | None:
        return self._serving

    def _load(self, entry: ModelEntry) -> Serving:
        started = time.perf_counter()
        if entry.path is None:
            predictor = default_predictor()
        else:
            predictor = load_artifact(entry.path, runtime=self.runtime, head_precision=self.head_precision)
            predictor.valid_only = self.valid_only
        # Warm-up before the model serves (and before readiness): the first pass pays for lazy set-up.
        predictor.predict(WARM_UP_NOTE, top_k=5)
        logger.info("model loaded", extra={"model": entry.name, "model_version": predictor.model_version,
                                           "runtime": _runtime_of(predictor),
                                           "seconds": round(time.perf_counter() - started, 2)})
        return Serving(entry.name, entry.kind, entry.path, entry.metrics, predictor)

    def _swap(self, serving: Serving) -> None:
        # Concurrent requests share the transformer's passes (models.batching); the replaced model's
        # batching thread ends once the requests already waiting on it are answered.
        serving.predictor.batch_concurrent_calls(self.batch_max_notes, self.batch_wait_ms)
        previous, self._serving = self._serving, serving
        self.load_error = None
        observability.set_model_version(serving.predictor.model_version)
        if previous is not None and previous.predictor is not serving.predictor:
            previous.predictor.close()

    def serve(self, predictor: Predictor, name: str = "custom") -> None:
        """Serve a ready predictor (the test seam, and the way to embed the service)."""
        self._swap(Serving(name, "custom", None, {}, predictor))

    def startup_name(self) -> str:
        """The model `start` loads: the database's latest deployment, else the startup artifact, else the
        embedded default."""
        name = self._deployed_name()
        if name is None:
            name = self.startup_artifact.name if self.startup_artifact else DEFAULT
        return name

    def start(self) -> None:
        """Load the model the database names, else the startup artifact, else the embedded default."""
        name = self.startup_name()
        try:
            with self._lock:
                self._swap(self._load(self.entry(name)))
        except (ArtifactError, ModelError) as exc:
            self.load_error = str(exc)
            logger.error("model load failed", extra={"model": name, "error": str(exc)})
            raise

    def activate(self, name: str, principal: Principal = SYSTEM) -> Serving:
        """Load `name`, serve it, and record the deployment (so other workers follow).

        Raises:
            ModelError: 404 unknown name; 409 the artifact does not load (nothing changes).
        """
        entry = self.entry(name)
        with self._lock:
            try:
                serving = self._load(entry)
            except ArtifactError as exc:
                raise ModelError(409, "artifact_error", str(exc)) from exc
            previous = self._serving.name if self._serving else None
            if self.sessions is not None:
                with self.sessions.begin() as session:
                    if previous is not None and self._serving.kind != "custom" and not self.history(limit=1):
                        # The start-up model becomes the first deployment, so a rollback can return to it.
                        session.add(ModelDeployment(
                            artifact=previous, model_version=self._serving.predictor.model_version,
                            activated_by="startup", activated_at=utcnow()))
                    session.add(ModelDeployment(artifact=name, model_version=serving.predictor.model_version,
                                                activated_by=principal.name, activated_at=utcnow()))
                    audit.record(session, principal, "model_activate",
                                 model_version=serving.predictor.model_version,
                                 thresholds=_thresholds(serving.predictor),
                                 details={"model": name, "previous": previous})
            self._swap(serving)
        return serving

    def rollback(self, principal: Principal = SYSTEM) -> Serving:
        """Serve the model that was active before the current deployment.

        Raises:
            ModelError: 409 when there is no earlier deployment.
        """
        history = self.history(limit=2)
        if len(history) < 2:
            raise ModelError(409, "no_previous_model", "no earlier deployment to roll back to")
        return self.activate(history[1].artifact, principal)

    def history(self, limit: int = 50) -> list[ModelDeployment]:
        if self.sessions is None:
            return []
        with self.sessions() as session:
            query = select(ModelDeployment).order_by(ModelDeployment.id.desc()).limit(limit)
            return list(session.scalars(query))

    def sync(self) -> None:
        """Follow a deployment made by another worker; a model that fails to load is logged and skipped."""
        name = self._deployed_name()
        current = self._serving.name if self._serving else None
        if name is None or name == current:
            return
        try:
            serving = self._load(self.entry(name))
        except (ArtifactError, ModelError) as exc:
            logger.error("model sync failed", extra={"model": name, "error": str(exc)})
            return
        with self._lock:
            self._swap(serving)

    def run_sync(self, every_seconds: float) -> threading.Thread:
        """Start a daemon thread that loads the first model, then follows deployments."""

        def loop() -> None:
            if self._serving is None:
                self._start_or_defer()
            while not self._stop.wait(every_seconds):
                if self._serving is None and self.load_error is None:
                    self._start_or_defer()  # the database was down at start-up
                    continue
                try:
                    self.sync()
                except SQLAlchemyError as exc:
                    logger.warning("model sync skipped: database unavailable",
                                   extra={"error_type": type(exc).__name__})
                except Exception:
                    logger.exception("model sync error")

        thread = threading.Thread(target=loop, name="model-sync", daemon=True)
        thread.start()
        return thread

    def _start_or_defer(self) -> None:
        """`start`; a worker started while the database is down (uvicorn replaces a dead worker at any
        time) tries again on the next tick instead of staying without a model for good."""
        try:
            self.start()
        except (ArtifactError, ModelError):
            pass  # logged, and `load_error` set; readiness stays false, and sync follows new deployments
        except SQLAlchemyError as exc:
            logger.warning("model load deferred: database unavailable",
                           extra={"error_type": type(exc).__name__})

    def stop(self) -> None:
        self._stop.set()
        if self._serving is not None:
            self._serving.predictor.close()

    def _deployed_name(self) -> str | None:
        history = self.history(limit=1)
        return history[0].artifact if history else None


def _thresholds(predictor: Predictor) -> dict:
    t = predictor.thresholds
    return {"accept": t.accept, "suggest": t.suggest, "review_band": t.review_band}


def _runtime_of(predictor: Predictor) -> str:
    """Which runtime serves the transformer(s) of a predictor: onnx, torch, or none without one."""
    runtimes = {part.runtime for part in predictor.parts() if isinstance(part, RuntimeScorer)}
    return "/".join(sorted(runtimes)) or "none"
