"""`python -m service`: serve the API, and the admin commands that work on its database directly.

    python -m service                      serve (settings from CODER_* environment variables)
    python -m service keys create --name N --role ehr|coder|admin    prints the key once
    python -m service keys revoke --name N | keys list
    python -m service db upgrade | downgrade [--revision R] | current
    python -m service export --output feedback.jsonl [--since ISO] [--until ISO]
    python -m service accuracy [--since ISO] [--until ISO] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

# PyTorch's OpenMP threads otherwise busy-wait after each operation, burning a core that the requests'
# own work needs (measured: 75 -> 65 ms of CPU per hybrid note). Read once, when OpenMP starts, so it is
# set before anything imports torch; an operator's own value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from models.artifact import load_artifact, read_config
from models.errors import ArtifactError
from service import db
from service.audit import AuditLog
from service.auth import KeyManagementError, KeyStore, Principal
from service.review_queue import ReviewQueue
from service.settings import Settings, get_settings


def app_from_env():
    """The uvicorn factory each worker process calls."""
    from service.app import create_app
    from service.observability import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def _check_model(settings: Settings) -> str | None:
    """Load the model the workers will start with (as `ModelRegistry.start` chooses it) and drop it: a
    corrupt artifact stops the service here, with its file named, rather than in every worker's background
    thread, where the service would run without ever getting ready. Returns the error, or None."""
    from service.model_registry import ModelError, ModelRegistry

    try:
        if settings.artifact:
            read_config(settings.artifact)  # a wrong path fails even when the database names another model
        engine = db.make_engine(settings.database_url)
        try:
            registry = ModelRegistry(db.make_sessionmaker(engine), settings.models_dir, settings.artifact)
            entry = registry.entry(registry.startup_name())
        finally:
            engine.dispose()
        if entry.path is not None:  # the embedded default has no files to check
            load_artifact(entry.path, runtime=settings.runtime, head_precision=settings.head_precision)
    except (ArtifactError, ModelError) as exc:
        return str(exc)
    return None


def _serve(settings: Settings) -> int:
    import uvicorn

    if settings.auto_migrate:
        db.upgrade(db.make_engine(settings.database_url))
        os.environ["CODER_AUTO_MIGRATE"] = "false"  # the workers find the schema ready
    problem = _check_model(settings)
    if problem is not None:
        print(f"error: cannot load the model: {problem}", file=sys.stderr)
        return 2
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="coder-metrics-")
    uvicorn.run("service.__main__:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level=settings.log_level.lower(), access_log=False,
                log_config=None, timeout_keep_alive=settings.keep_alive_seconds)
    return 0


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise SystemExit(f"error: {value!r}: give a time zone (e.g. 2026-11-01T00:00:00Z)")
    return parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API (the default)")
    keys = commands.add_parser("keys", help="create, revoke and list API keys").add_subparsers(dest="action",
                                                                                              required=True)
    create = keys.add_parser("create")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=["ehr", "coder", "admin"])
    keys.add_parser("revoke").add_argument("--name", required=True)
    keys.add_parser("list")
    database = commands.add_parser("db", help="run the database migrations")
    database.add_argument("action", choices=["upgrade", "downgrade", "current"])
    database.add_argument("--revision", help="target revision (default: head for upgrade, base for downgrade)")
    export = commands.add_parser("export", help="resolved review items as training JSONL")
    export.add_argument("--output", required=True, type=Path)
    accuracy = commands.add_parser("accuracy", help="model-coder agreement over resolved items")
    accuracy.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for sub in (export, accuracy):
        sub.add_argument("--since", help="ISO time with zone, inclusive")
        sub.add_argument("--until", help="ISO time with zone, exclusive")
    args = parser.parse_args(argv)

    settings = get_settings()
    if args.command in (None, "serve"):
        return _serve(settings)
    engine = db.make_engine(settings.database_url)
    if args.command == "db":
        if args.action == "upgrade":
            db.upgrade(engine, args.revision or "head")
        elif args.action == "downgrade":
            db.downgrade(engine, args.revision or "base")
        print(f"database at revision {db.current_revision(engine) or 'base (empty)'}")
        return 0
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    cli = Principal("cli", "admin")
    if args.command == "keys":
        store = KeyStore(sessions)
        try:
            if args.action == "create":
                created = store.create(args.name, args.role, by=cli)
                print(created.key)
                print(f"(key {created.name!r}, role {created.role}: shown only now; store it safely)",
                      file=sys.stderr)
            elif args.action == "revoke":
                store.revoke(args.name, by=cli)
                print(f"revoked {args.name!r}")
            else:
                for key in store.list():
                    state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                    print(f"{key.name}\t{key.role}\t{key.key_prefix}…\t{state}")
        except KeyManagementError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "export":
        records = ReviewQueue(sessions).export(cli, _time(args.since), _time(args.until))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"wrote {len(records)} resolved notes to {args.output}")
        return 0
    report = AuditLog(sessions).accuracy(_time(args.since), _time(args.until))
    if args.json:
        payload = asdict(report)
        for code in payload["per_code"]:
            match = next(c for c in report.per_code if c.code == code["code"])
            code.update(precision=match.precision, recall=match.recall)
        print(json.dumps(payload, default=str, indent=2))
        return 0
    print(f"resolved items: {report.items}")
    print(f"suggestions vs final codes: precision {report.precision:.3f}  recall {report.recall:.3f}  "
          f"F1 {report.f1:.3f}  (precision of auto-accepted codes {report.accepted_precision:.3f})")
    print("code\tsuggested\tfinal\tagreed\tprecision\trecall")
    for c in report.per_code:
        print(f"{c.code}\t{c.suggested}\t{c.final}\t{c.agreed}\t{c.precision:.3f}\t{c.recall:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
