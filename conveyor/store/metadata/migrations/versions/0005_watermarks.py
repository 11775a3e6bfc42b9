"""data sources remember a watermark per pipeline (incremental reads)

Revision ID: 0005_watermarks
Revises: 0004_governance
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_watermarks'
down_revision = "0005_datasets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'data_watermarks',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('pipeline', sa.String(200), nullable=False),
        sa.Column('source', sa.String(500), nullable=False),
        sa.Column('value', sa.JSON(), nullable=True),
        sa.Column('run_id', sa.String(32), nullable=True),
        sa.Column('state', sa.String(12), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
    )
    op.create_index('ix_data_watermarks_key', 'data_watermarks', ['pipeline', 'source'])


def downgrade() -> None:
    op.drop_index('ix_data_watermarks_key', table_name='data_watermarks')
    op.drop_table('data_watermarks')
