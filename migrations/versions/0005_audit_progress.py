"""audit progress: the phase a running audit is in and how far along it is (0-1), written by the worker

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:25:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('audits', sa.Column('phase', sa.String(length=32), nullable=True))
    op.add_column('audits', sa.Column('progress', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('audits') as batch:
        batch.drop_column('progress')
        batch.drop_column('phase')
