"""Initial schema: API keys, review queue, audit log, model deployments.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.db import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "audit_events is append-only"


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_api_keys_key_prefix", "api_keys", ["key_prefix"])
    op.create_table(
        "review_items",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("note_id", sa.String(200), nullable=True, unique=True),
        sa.Column("encounter_id", sa.String(200), nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("systems", sa.JSON, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Float, nullable=False),
        sa.Column("suggestions", sa.JSON, nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("claimed_by", sa.String(100), nullable=True),
        sa.Column("claim_expires_at", UTCDateTime, nullable=True),
        sa.Column("resolved_by", sa.String(100), nullable=True),
        sa.Column("resolved_at", UTCDateTime, nullable=True),
        sa.Column("final_codes", sa.JSON, nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
    )
    op.create_index("ix_review_items_queue", "review_items", ["status", "priority", "created_at"])
    op.create_index("ix_review_items_encounter_id", "review_items", ["encounter_id"])
    op.create_index("ix_review_items_claimed_by", "review_items", ["claimed_by"])
    op.create_index("ix_review_items_resolved_at", "review_items", ["resolved_at"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("review_id", sa.String(36), nullable=True),
        sa.Column("note_id", sa.String(200), nullable=True),
        sa.Column("model_version", sa.String(200), nullable=True),
        sa.Column("thresholds", sa.JSON, nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
    )
    for column in ("at", "actor", "action", "review_id", "note_id"):
        op.create_index(f"ix_audit_events_{column}", "audit_events", [column])
    op.create_table(
        "model_deployments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("artifact", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("activated_by", sa.String(100), nullable=False),
        sa.Column("activated_at", UTCDateTime, nullable=False),
    )
    # The audit log is append-only in the database itself, not only in our code.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_events_no_{verb}")
    op.drop_table("model_deployments")
    op.drop_table("audit_events")
    op.drop_index("ix_review_items_resolved_at", "review_items")
    op.drop_index("ix_review_items_claimed_by", "review_items")
    op.drop_index("ix_review_items_encounter_id", "review_items")
    op.drop_index("ix_review_items_queue", "review_items")
    op.drop_table("review_items")
    op.drop_index("ix_api_keys_key_prefix", "api_keys")
    op.drop_table("api_keys")
