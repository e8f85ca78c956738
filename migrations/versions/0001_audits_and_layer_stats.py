"""audits and layer stats

Revision ID: 0001
Revises:
Create Date: 2026-11-27 02:20:46.484479
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audits',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('artifact_sha256', sa.String(length=64), nullable=False),
    sa.Column('artifact_format', sa.String(length=16), nullable=False),
    sa.Column('artifact_size', sa.BigInteger(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=True),
    sa.Column('inputs_sha256', sa.String(length=64), nullable=True),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_by', sa.String(length=255), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_detail', sa.Text(), nullable=True),
    sa.Column('network_parameters', sa.BigInteger(), nullable=True),
    sa.Column('network_layers', sa.Integer(), nullable=True),
    sa.Column('setup', sa.JSON(), nullable=True),
    sa.Column('findings', sa.JSON(), nullable=True),
    sa.Column('verdict', sa.String(length=16), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name=op.f('ck_audits_status_valid')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audits'))
    )
    with op.batch_alter_table('audits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audits_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audits_status'), ['status'], unique=False)

    op.create_table('layer_stats',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('audit_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('depth', sa.Integer(), nullable=False),
    sa.Column('parameters', sa.BigInteger(), nullable=False),
    sa.Column('weight_norm', sa.Float(), nullable=False),
    sa.Column('grad_norm', sa.Float(), nullable=False),
    sa.Column('grad_mean_abs', sa.Float(), nullable=False),
    sa.Column('grad_std', sa.Float(), nullable=False),
    sa.Column('grad_max_abs', sa.Float(), nullable=False),
    sa.Column('grad_zero_fraction', sa.Float(), nullable=False),
    sa.Column('grad_nonfinite', sa.BigInteger(), nullable=False),
    sa.Column('grad_to_weight', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['audit_id'], ['audits.id'], name=op.f('fk_layer_stats_audit_id_audits'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_layer_stats'))
    )
    with op.batch_alter_table('layer_stats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_layer_stats_audit_id'), ['audit_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('layer_stats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_layer_stats_audit_id'))

    op.drop_table('layer_stats')
    with op.batch_alter_table('audits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audits_status'))
        batch_op.drop_index(batch_op.f('ix_audits_created_at'))

    op.drop_table('audits')
