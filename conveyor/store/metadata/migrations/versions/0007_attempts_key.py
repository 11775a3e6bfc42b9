"""step attempts keyed by (step run, attempt); a step run's one completed attempt kept on the step run

The autoincrement id and the two secondary indexes of step_attempts go; on SQLite the table has no
rowid, so an attempt's row is stored in its primary key's B-tree alone. A run's attempts are found
through its step runs (ix_step_runs_run). The rows a store already holds are copied over. The step
run whose only attempt completed the first time (most of them) keeps that attempt's measures in new
used_* columns of step_runs, written by the update of the step's end: no step_attempts row.

Revision ID: 0007_attempts_key
Revises: 0006_resources
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_attempts_key'
down_revision = '0006_resources'
branch_labels = None
depends_on = None

COLUMNS = ('step_run_id', 'attempt', 'run_id', 'status', 'executor', 'host', 'started_at', 'ended_at', 'wall_s',
           'cpu_s', 'peak_rss_bytes', 'bytes_read', 'bytes_written', 'gpu_s', 'gpu_peak_bytes', 'error')


def _measures() -> list[sa.Column]:
    return [
        sa.Column('step_run_id', sa.String(32), sa.ForeignKey('step_runs.id', ondelete='CASCADE'), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.String(32), nullable=False),
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
    ]


USED = (('executor', sa.String(20)), ('host', sa.String(200)), ('started_at', sa.Float()), ('ended_at', sa.Float()),
        ('wall_s', sa.Float()), ('cpu_s', sa.Float()), ('peak_rss_bytes', sa.BigInteger()),
        ('bytes_read', sa.BigInteger()), ('bytes_written', sa.BigInteger()), ('gpu_s', sa.Float()),
        ('gpu_peak_bytes', sa.BigInteger()))


def upgrade() -> None:
    with op.batch_alter_table('step_runs') as batch:
        for name, kind in USED:
            batch.add_column(sa.Column(f'used_{name}', kind, nullable=True))
    op.drop_index('ix_step_attempts_run', table_name='step_attempts')
    op.drop_index('ix_step_attempts_step_run', table_name='step_attempts')
    op.rename_table('step_attempts', 'step_attempts_0006')
    op.create_table('step_attempts', *_measures(),
                    sa.PrimaryKeyConstraint('step_run_id', 'attempt', name='pk_step_attempts'),
                    sqlite_with_rowid=False)
    cols = ', '.join(COLUMNS)
    # the first row of an attempt recorded twice (the engine numbers attempts uniquely; this only guards the key)
    op.execute(f"INSERT INTO step_attempts ({cols}) SELECT {cols} FROM step_attempts_0006 "
               "WHERE id IN (SELECT MIN(id) FROM step_attempts_0006 GROUP BY step_run_id, attempt)")
    op.drop_table('step_attempts_0006')


def downgrade() -> None:
    cols = ', '.join(COLUMNS)
    used = ', '.join(f'used_{name}' for name, _kind in USED)
    # the attempts kept on their step runs become rows again
    op.execute(f"INSERT INTO step_attempts ({cols}) SELECT id, 1, run_id, 'completed', {used}, NULL "
               "FROM step_runs WHERE used_executor IS NOT NULL")
    with op.batch_alter_table('step_runs') as batch:
        for name, _kind in reversed(USED):
            batch.drop_column(f'used_{name}')
    op.rename_table('step_attempts', 'step_attempts_0007')
    op.create_table('step_attempts', sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
                    *_measures())
    cols = ', '.join(COLUMNS)
    op.execute(f"INSERT INTO step_attempts ({cols}) SELECT {cols} FROM step_attempts_0007 "
               "ORDER BY started_at, step_run_id, attempt")
    op.drop_table('step_attempts_0007')
    op.create_index('ix_step_attempts_step_run', 'step_attempts', ['step_run_id'])
    op.create_index('ix_step_attempts_run', 'step_attempts', ['run_id'])
