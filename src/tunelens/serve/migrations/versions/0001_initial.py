"""initial schema: api keys, exchanges, feedback, A/B judgments

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "exchanges",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("api_key_id", sa.String(32), nullable=True, index=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("model_id", sa.String(500), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("guardrails", sa.JSON(), nullable=False),
        sa.Column("finish_reason", sa.String(32), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False, index=True),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("exchange_id", sa.String(64), sa.ForeignKey("exchanges.id"), nullable=False, index=True),
        sa.Column("api_key_id", sa.String(32), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("rating_scale", sa.String(16), nullable=True),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("preferred", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "ab_judgments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("api_key_id", sa.String(32), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("left_model", sa.String(200), nullable=False),
        sa.Column("right_model", sa.String(200), nullable=False),
        sa.Column("left_response", sa.Text(), nullable=False),
        sa.Column("right_response", sa.Text(), nullable=False),
        sa.Column("metric_left", sa.Float(), nullable=True),
        sa.Column("metric_right", sa.Float(), nullable=True),
        sa.Column("choice", sa.String(8), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("judged_at", sa.DateTime(), nullable=True),
    )


def downgrade() -> None:
    for table in ("ab_judgments", "feedback", "exchanges", "api_keys"):
        op.drop_table(table)
