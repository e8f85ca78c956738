"""layer probes: per layer and probe batch, output and output-gradient statistics

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 02:39:38.092474
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('layer_probes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('audit_id', sa.String(length=32), nullable=False),
    sa.Column('layer_id', sa.Integer(), nullable=False),
    sa.Column('depth', sa.Integer(), nullable=False),
    sa.Column('batch', sa.Integer(), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('numel', sa.BigInteger(), nullable=False),
    sa.Column('activation_mean', sa.Float(), nullable=True),
    sa.Column('activation_std', sa.Float(), nullable=True),
    sa.Column('activation_zero_fraction', sa.Float(), nullable=True),
    sa.Column('activation_saturated_fraction', sa.Float(), nullable=True),
    sa.Column('output_grad_norm', sa.Float(), nullable=True),
    sa.Column('output_grad_mean_abs', sa.Float(), nullable=True),
    sa.Column('output_grad_max_abs', sa.Float(), nullable=True),
    sa.Column('output_grad_zero_count', sa.BigInteger(), nullable=True),
    sa.Column('output_grad_zero_fraction', sa.Float(), nullable=True),
    sa.Column('output_grad_nonfinite', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['audit_id'], ['audits.id'], name=op.f('fk_layer_probes_audit_id_audits'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['layer_id'], ['layer_stats.id'], name=op.f('fk_layer_probes_layer_id_layer_stats'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_layer_probes'))
    )
    with op.batch_alter_table('layer_probes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_layer_probes_audit_id'), ['audit_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_layer_probes_layer_id'), ['layer_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('layer_probes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_layer_probes_layer_id'))
        batch_op.drop_index(batch_op.f('ix_layer_probes_audit_id'))

    op.drop_table('layer_probes')
