"""every step attempt records what it used; servers record CPU per endpoint and version

Revision ID: 0006_resources
Revises: 0005_watermarks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006_resources'
down_revision = '0005_watermarks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'step_attempts',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('step_run_id', sa.String(32), sa.ForeignKey('step_runs.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('run_id', sa.String(32), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('executor', sa.String(20), nullable=True),
        sa.Column('host', sa.String(200), nullable=True),
        sa.Column('started_at', sa.Float(), nullable=True),
        sa.Column('ended_at', sa.Float(), nullable=True),
        sa.Column('wall_s', sa.Float(), nullable=True),
        sa.Column('cpu_s', sa.Float(), nullable=True),
        sa.Column('peak_rss_bytes', sa.BigInteger(), nullable=True),
        sa.Column('bytes_read', sa.BigInteger(), nullable=True),
        sa.Column('bytes_written', sa.BigInteger(), nullable=True),
        sa.Column('gpu_s', sa.Float(), nullable=True),
        sa.Column('gpu_peak_bytes', sa.BigInteger(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
    )
    op.create_index('ix_step_attempts_step_run', 'step_attempts', ['step_run_id'])
    op.create_index('ix_step_attempts_run', 'step_attempts', ['run_id'])
    with op.batch_alter_table('step_runs') as batch:
        batch.add_column(sa.Column('preemptions', sa.Integer(), nullable=True))
    op.create_table(
        'serving_usage',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('endpoint', sa.String(200), nullable=False),
        sa.Column('model', sa.String(200), nullable=True),
        sa.Column('version', sa.Integer(), nullable=True),
        sa.Column('period_start', sa.Float(), nullable=False),
        sa.Column('period_end', sa.Float(), nullable=False),
        sa.Column('requests', sa.Integer(), nullable=False),
        sa.Column('errors', sa.Integer(), nullable=False),
        sa.Column('cpu_s', sa.Float(), nullable=False),
        sa.Column('wall_s', sa.Float(), nullable=False),
        sa.Column('host', sa.String(200), nullable=True),
    )
    op.create_index('ix_serving_usage_endpoint', 'serving_usage', ['endpoint', 'period_start'])


def downgrade() -> None:
    op.drop_index('ix_serving_usage_endpoint', table_name='serving_usage')
    op.drop_table('serving_usage')
    with op.batch_alter_table('step_runs') as batch:
        batch.drop_column('preemptions')
    op.drop_index('ix_step_attempts_run', table_name='step_attempts')
    op.drop_index('ix_step_attempts_step_run', table_name='step_attempts')
    op.drop_table('step_attempts')
