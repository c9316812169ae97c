"""The JWT replay store, the feedback store and the audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from cds_service.storage.schema import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_VALUE = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "seen_jti",
        sa.Column("iss", sa.Text(), nullable=False),
        sa.Column("jti", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("iss", "jti", name="seen_jti_pkey"),
    )
    op.create_index("seen_jti_expires_at", "seen_jti", ["expires_at"])
    op.create_table(
        "feedback",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("item_hash", sa.Text(), nullable=False, unique=True),
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("card", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("accepted_suggestions", JSON_VALUE),
        sa.Column("override_system", sa.Text()),
        sa.Column("override_code", sa.Text()),
        sa.Column("user_comment", sa.Text()),
        sa.Column("outcome_timestamp", UtcDateTime(), nullable=False),
        sa.Column("iss", sa.Text()),
        sa.Column("tenant", sa.Text()),
        sa.Column("jti", sa.Text()),
        sa.Column("received_at", UtcDateTime(), nullable=False),
    )
    op.create_index("feedback_card", "feedback", ["card"])
    op.create_table(
        "audit_record",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("card_uuid", sa.Text()),
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("hook_instance", sa.Text()),
        sa.Column("issuer", sa.Text()),
        sa.Column("tenant", sa.Text()),
        sa.Column("user_id", sa.Text()),
        sa.Column("patient", sa.Text()),
        sa.Column("encounter", sa.Text()),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("returned", sa.Boolean(), nullable=False),
        sa.Column("scorer_id", sa.Text()),
        sa.Column("scorer_version", sa.Text()),
        sa.Column("scorer_hash", sa.Text()),
        sa.Column("summary", sa.Text()),
        sa.Column("pathway", sa.Text()),
        sa.Column("endotype", sa.Text()),
        sa.Column("persistence", sa.Text()),
        sa.Column("anchor", JSON_VALUE),
        sa.Column("gate_reason", sa.Text()),
        sa.Column("inputs", JSON_VALUE, nullable=False),
        sa.Column("missing", JSON_VALUE, nullable=False),
        sa.Column("excluded", JSON_VALUE, nullable=False),
        sa.Column("data_source", sa.Text()),
        sa.Column("sources", JSON_VALUE, nullable=False),
        sa.Column("fhir_calls", sa.Integer(), nullable=False),
        sa.Column("fhir_seconds", sa.Float(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("error", sa.Text()),
    )
    op.create_index("audit_record_card_uuid", "audit_record", ["card_uuid"])
    op.create_index("audit_record_recorded_at", "audit_record", ["recorded_at"])
    op.create_index("audit_record_patient", "audit_record", ["patient"])


def downgrade() -> None:
    op.drop_table("audit_record")
    op.drop_table("feedback")
    op.drop_table("seen_jti")
