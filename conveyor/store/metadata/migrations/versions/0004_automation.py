"""automation: firings carry their launcher and a heartbeat; schedules and triggers can ask for fresh runs

Revision ID: 0004_automation
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004_automation'
down_revision = "0004_cache"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('firings') as batch:
        batch.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('launcher_pid', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('launcher_host', sa.String(255), nullable=True))
        batch.add_column(sa.Column('heartbeat_at', sa.Float(), nullable=True))
        batch.create_index('ix_firings_status_at', ['status', 'at'])
    with op.batch_alter_table('schedules') as batch:
        batch.add_column(sa.Column('fresh', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('triggers') as batch:
        batch.add_column(sa.Column('fresh', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('triggers') as batch:
        batch.drop_column('fresh')
    with op.batch_alter_table('schedules') as batch:
        batch.drop_column('fresh')
    with op.batch_alter_table('firings') as batch:
        batch.drop_index('ix_firings_status_at')
        batch.drop_column('heartbeat_at')
        batch.drop_column('launcher_host')
        batch.drop_column('launcher_pid')
        batch.drop_column('attempts')
