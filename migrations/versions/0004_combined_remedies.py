"""combined remedies: each audit's combined patch of verified fixes (worker/remedies)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('audits', sa.Column('combined', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('audits') as batch:
        batch.drop_column('combined')
