"""Model versions: list, switch and roll back without a restart; readiness; workers follow the database."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from models.artifact import load_artifact, save_artifact
from service.app import create_app
from service.settings import Settings
from tests.service_fixtures import MINI, TINY_RECIPE, make_service
from training.config import load_config
from training.train import train

TEXT = "Known type 2 diabetes mellitus. Essential hypertension treated with enalapril."


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder with two trained artifacts (tiny-a, tiny-b) and one broken one."""
    root = tmp_path_factory.mktemp("models")
    recipe = root.parent / "tiny-a.yaml"
    recipe.write_text(TINY_RECIPE.replace("tiny-linear", "tiny-a") % MINI, encoding="utf-8")
    train(load_config(recipe), root / "tiny-a", progress=False)
    first = load_artifact(root / "tiny-a")
    save_artifact(root / "tiny-b", first.scorer, first.thresholds, model_version="tiny-b",
                  metrics={"diagnoses": {"map": 0.5}})
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text('{"format_version": 99, "kind": "linear"}')
    return root


def _service(database_url: str, models_dir: Path, tmp_path: Path):
    svc = make_service(database_url, None, tmp_path, artifact=str(models_dir / "tiny-a"))
    svc.settings.models_dir = str(models_dir)
    svc.client.app.state.registry.models_dir = models_dir
    return svc


def test_readiness_is_false_until_a_model_is_loaded(database_url: str, models_dir: Path, tmp_path: Path) -> None:
    svc = _service(database_url, models_dir, tmp_path)
    client = svc.client  # not entered: the start-up load has not run
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["error"]["code"] == "not_ready"
    refused = svc.call("POST", "/v1/codes:suggest", "ehr", json={"text": TEXT})
    assert refused.status_code == 503
    svc.client.app.state.registry.start()
    assert client.get("/readyz").json() == {"status": "ready", "model_version": "tiny-a"}


def test_admin_lists_switches_and_rolls_back_models(database_url: str, models_dir: Path, tmp_path: Path) -> None:
    svc = _service(database_url, models_dir, tmp_path)
    svc.client.app.state.registry.start()
    listed = svc.call("GET", "/v1/models", "admin").json()
    by_name = {m["name"]: m for m in listed["models"]}
    assert {"default", "tiny-a", "tiny-b", "broken"} <= set(by_name)
    assert by_name["tiny-a"]["active"] and not by_name["tiny-b"]["active"]
    assert by_name["tiny-b"]["metrics"] == {"diagnoses": {"map": 0.5}}
    assert by_name["broken"]["kind"] == "unreadable"

    assert svc.call("POST", "/v1/models:rollback", "admin").status_code == 409  # nothing to go back to
    switched = svc.call("POST", "/v1/models/tiny-b:activate", "admin")
    assert switched.status_code == 200 and switched.json()["model_version"] == "tiny-b"
    assert svc.call("POST", "/v1/codes:suggest", "ehr", json={"text": TEXT}).json()["model_version"] == "tiny-b"
    # The start-up model counts as the first deployment: one switch can be rolled back.
    rolled = svc.call("POST", "/v1/models:rollback", "admin")
    assert rolled.status_code == 200 and rolled.json()["name"] == "tiny-a"
    svc.call("POST", "/v1/models/tiny-b:activate", "admin")
    svc.call("POST", "/v1/models/tiny-a:activate", "admin")
    rolled = svc.call("POST", "/v1/models:rollback", "admin")
    assert rolled.status_code == 200 and rolled.json()["name"] == "tiny-b"
    history = svc.call("GET", "/v1/models", "admin").json()["history"]
    assert [h["model"] for h in history] == ["tiny-b", "tiny-a", "tiny-b", "tiny-a", "tiny-b", "tiny-a"]
    assert [h["activated_by"] for h in history] == ["admin-1"] * 5 + ["startup"]
    events = svc.call("GET", "/v1/audit", "admin", params={"action": "model_activate"}).json()["events"]
    assert [e["details"]["model"] for e in events] == ["tiny-b", "tiny-a", "tiny-b", "tiny-a", "tiny-b"]
    assert events[0]["details"]["previous"] == "tiny-a" and events[0]["thresholds"]["accept"] == 0.5


def test_a_bad_or_unknown_model_changes_nothing(database_url: str, models_dir: Path, tmp_path: Path) -> None:
    svc = _service(database_url, models_dir, tmp_path)
    svc.client.app.state.registry.start()
    broken = svc.call("POST", "/v1/models/broken:activate", "admin")
    assert broken.status_code == 409 and broken.json()["error"]["code"] == "artifact_error"
    assert "config.json" in broken.json()["error"]["message"]
    unknown = svc.call("POST", "/v1/models/nope:activate", "admin")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    traversal = svc.call("POST", "/v1/models/..:activate", "admin")
    assert traversal.status_code == 404
    assert svc.call("GET", "/v1/model", "ehr").json()["name"] == "tiny-a"
    assert svc.call("GET", "/v1/models", "admin").json()["history"] == []


def test_only_admins_see_where_the_model_lies_on_the_server(database_url: str, models_dir: Path,
                                                             tmp_path: Path) -> None:
    svc = _service(database_url, models_dir, tmp_path)
    svc.client.app.state.registry.start()
    for role in ("ehr", "coder"):
        shown = svc.call("GET", "/v1/model", role).json()
        assert shown["name"] == "tiny-a" and shown["artifact"] is None
    assert svc.call("GET", "/v1/model", "admin").json()["artifact"] == str(models_dir / "tiny-a")


def test_switching_fails_no_request_in_flight(database_url: str, models_dir: Path, tmp_path: Path) -> None:
    svc = _service(database_url, models_dir, tmp_path)
    svc.client.app.state.registry.start()
    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def ehr() -> None:
        while not stop.is_set():
            response = svc.call("POST", "/v1/codes:suggest", "ehr", json={"text": TEXT})
            statuses.append(response.status_code)
            versions.add(response.json().get("model_version", "?"))

    threads = [threading.Thread(target=ehr) for _ in range(4)]
    for thread in threads:
        thread.start()
    for name in ("tiny-b", "tiny-a", "tiny-b", "tiny-a"):
        assert svc.call("POST", f"/v1/models/{name}:activate", "admin").status_code == 200
    stop.set()
    for thread in threads:
        thread.join()
    assert statuses and set(statuses) == {200}
    assert versions <= {"tiny-a", "tiny-b"}


def test_another_worker_follows_the_deployment(database_url: str, models_dir: Path, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, models_dir=str(models_dir), artifact=str(models_dir / "tiny-a"))
    first, second = create_app(settings), create_app(settings)
    for app in (first, second):
        app.state.registry.start()
    first.state.registry.activate("tiny-b")
    assert second.state.registry.serving.predictor.model_version == "tiny-a"
    second.state.registry.sync()
    assert second.state.registry.serving.predictor.model_version == "tiny-b"
    # A restarted worker serves the deployed model, not the start-up artifact.
    third = create_app(settings)
    third.state.registry.start()
    assert third.state.registry.serving.name == "tiny-b"
