"""monitoring and automation

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('monitors',
                    sa.Column('name', sa.String(200), primary_key=True),
                    sa.Column('endpoint', sa.String(200), nullable=False),
                    sa.Column('every_s', sa.Float(), nullable=False),
                    sa.Column('config', sa.JSON(), nullable=False),
                    sa.Column('enabled', sa.Boolean(), nullable=False),
                    sa.Column('next_at', sa.Float(), nullable=False),
                    sa.Column('created_at', sa.Float(), nullable=False))
    op.create_table('monitor_checks',
                    sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
                    sa.Column('monitor', sa.String(200), nullable=False),
                    sa.Column('at', sa.Float(), nullable=False),
                    sa.Column('status', sa.String(20), nullable=False),
                    sa.Column('rows', sa.Integer()),
                    sa.Column('drift_share', sa.Float()),
                    sa.Column('metric', sa.Float()),
                    sa.Column('p99_ms', sa.Float()),
                    sa.Column('findings', sa.JSON()))
    op.create_index('ix_monitor_checks_monitor', 'monitor_checks', ['monitor'])
    op.create_table('alerts',
                    sa.Column('id', sa.String(32), primary_key=True),
                    sa.Column('source', sa.String(200), nullable=False),
                    sa.Column('key', sa.String(400), nullable=False),
                    sa.Column('at', sa.Float(), nullable=False),
                    sa.Column('message', sa.Text(), nullable=False),
                    sa.Column('details', sa.JSON()),
                    sa.Column('suppressed', sa.Boolean(), nullable=False),
                    sa.Column('delivery', sa.String(20), nullable=False),
                    sa.Column('attempts', sa.Integer(), nullable=False),
                    sa.Column('last_error', sa.Text()))
    op.create_index('ix_alerts_source', 'alerts', ['source'])
    op.create_table('webhooks',
                    sa.Column('name', sa.String(200), primary_key=True),
                    sa.Column('url', sa.String(2000), nullable=False),
                    sa.Column('sources', sa.JSON()),
                    sa.Column('created_at', sa.Float(), nullable=False))
    op.create_table('schedules',
                    sa.Column('name', sa.String(200), primary_key=True),
                    sa.Column('target', sa.String(1000), nullable=False),
                    sa.Column('params', sa.JSON()),
                    sa.Column('cron', sa.String(100), nullable=False),
                    sa.Column('enabled', sa.Boolean(), nullable=False),
                    sa.Column('next_at', sa.Float(), nullable=False),
                    sa.Column('created_at', sa.Float(), nullable=False))
    op.create_table('triggers',
                    sa.Column('name', sa.String(200), primary_key=True),
                    sa.Column('on_kind', sa.String(20), nullable=False),
                    sa.Column('on_value', sa.String(1000), nullable=False),
                    sa.Column('target', sa.String(1000), nullable=False),
                    sa.Column('params', sa.JSON()),
                    sa.Column('max_concurrent', sa.Integer(), nullable=False),
                    sa.Column('enabled', sa.Boolean(), nullable=False),
                    sa.Column('created_at', sa.Float(), nullable=False))
    op.create_table('firings',
                    sa.Column('id', sa.String(32), primary_key=True),
                    sa.Column('source_kind', sa.String(20), nullable=False),
                    sa.Column('source', sa.String(200), nullable=False),
                    sa.Column('at', sa.Float(), nullable=False),
                    sa.Column('cause', sa.JSON()),
                    sa.Column('status', sa.String(20), nullable=False),
                    sa.Column('run_id', sa.String(32)),
                    sa.Column('finished_at', sa.Float()),
                    sa.Column('error', sa.Text()))
    op.create_index('ix_firings_source', 'firings', ['source'])
    op.create_table('seen_objects',
                    sa.Column('trigger', sa.String(200), primary_key=True),
                    sa.Column('path', sa.String(2000), primary_key=True),
                    sa.Column('at', sa.Float(), nullable=False))


def downgrade() -> None:
    for name in ('seen_objects', 'firings', 'triggers', 'schedules', 'webhooks', 'alerts', 'monitor_checks',
                 'monitors'):
        op.drop_table(name)
