"""api keys: one row per client key (its sha256 only), and each audit's owner

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 06:23:13.005965
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('admin', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    if op.get_context().dialect.name == 'sqlite':
        # SQLite cannot ALTER a constraint in; a column may bring its REFERENCES clause along, which spares
        # copying the table (so the offline SQL, which cannot reflect a table to copy it, is written too).
        op.execute('ALTER TABLE audits ADD COLUMN owner_key_id VARCHAR(32) '
                   'CONSTRAINT fk_audits_owner_key_id_api_keys REFERENCES api_keys (id)')
    else:
        op.add_column('audits', sa.Column('owner_key_id', sa.String(length=32), nullable=True))
        op.create_foreign_key(op.f('fk_audits_owner_key_id_api_keys'), 'audits', 'api_keys', ['owner_key_id'], ['id'])
    op.create_index(op.f('ix_audits_owner_key_id'), 'audits', ['owner_key_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_audits_owner_key_id'), table_name='audits')
    with op.batch_alter_table('audits', schema=None) as batch_op:
        if op.get_context().dialect.name != 'sqlite':  # SQLite's copy leaves the column's constraint behind
            batch_op.drop_constraint(batch_op.f('fk_audits_owner_key_id_api_keys'), type_='foreignkey')
        batch_op.drop_column('owner_key_id')
    op.drop_table('api_keys')
