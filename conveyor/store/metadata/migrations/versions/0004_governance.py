"""governance: API keys carry the actor they act as

Revision ID: 0004_governance
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004_governance'
down_revision = "0004_automation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot alter a table in place
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('actor', sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('actor')
