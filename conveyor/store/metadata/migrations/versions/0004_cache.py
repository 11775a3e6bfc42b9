"""step runs keep the components of their cache key

Revision ID: 0004_cache
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004_cache'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('step_runs') as batch:
        batch.add_column(sa.Column('cache_parts', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('step_runs') as batch:
        batch.drop_column('cache_parts')
