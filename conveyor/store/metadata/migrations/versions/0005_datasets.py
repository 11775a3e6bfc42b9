"""versioned datasets: versions identified by content, aliases, and the runs that produced or read them

Revision ID: 0005_datasets
Revises: 0004_governance
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_datasets'
down_revision = "0004_governance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('datasets',
                    sa.Column('name', sa.String(200), primary_key=True),
                    sa.Column('description', sa.Text()),
                    sa.Column('created_at', sa.Float(), nullable=False),
                    sa.Column('created_by', sa.String(200)))
    op.create_table('dataset_versions',
                    sa.Column('id', sa.String(32), primary_key=True),
                    sa.Column('dataset', sa.String(200), sa.ForeignKey('datasets.name'), nullable=False),
                    sa.Column('version', sa.Integer(), nullable=False),
                    sa.Column('content_hash', sa.String(80), nullable=False),
                    sa.Column('kind', sa.String(10), nullable=False),
                    sa.Column('artifact_id', sa.String(32), sa.ForeignKey('artifacts.id'), nullable=False),
                    sa.Column('profile_artifact_id', sa.String(32)),
                    sa.Column('schema', sa.JSON()),
                    sa.Column('num_rows', sa.BigInteger()),
                    sa.Column('num_files', sa.BigInteger()),
                    sa.Column('size', sa.BigInteger()),
                    sa.Column('source', sa.String(2000)),
                    sa.Column('run_id', sa.String(32)),
                    sa.Column('step_run_id', sa.String(32)),
                    sa.Column('created_at', sa.Float(), nullable=False),
                    sa.Column('created_by', sa.String(200)),
                    sa.UniqueConstraint('dataset', 'version', name='uq_dataset_version'),
                    sa.UniqueConstraint('dataset', 'content_hash', name='uq_dataset_content'))
    op.create_table('dataset_aliases',
                    sa.Column('dataset', sa.String(200), sa.ForeignKey('datasets.name'), primary_key=True),
                    sa.Column('alias', sa.String(100), primary_key=True),
                    sa.Column('version', sa.Integer(), nullable=False),
                    sa.Column('updated_at', sa.Float(), nullable=False),
                    sa.Column('updated_by', sa.String(200)))
    op.create_table('dataset_usage',
                    sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
                    sa.Column('dataset', sa.String(200), nullable=False),
                    sa.Column('version', sa.Integer(), nullable=False),
                    sa.Column('role', sa.String(10), nullable=False),
                    sa.Column('run_id', sa.String(32)),
                    sa.Column('step_run_id', sa.String(32)),
                    sa.Column('at', sa.Float(), nullable=False))
    op.create_index('ix_dataset_usage', 'dataset_usage', ['dataset', 'version'])
    op.create_index('ix_dataset_usage_run', 'dataset_usage', ['run_id'])


def downgrade() -> None:
    op.drop_index('ix_dataset_usage_run', 'dataset_usage')
    op.drop_index('ix_dataset_usage', 'dataset_usage')
    op.drop_table('dataset_usage')
    op.drop_table('dataset_aliases')
    op.drop_table('dataset_versions')
    op.drop_table('datasets')
