"""The database layer: SQLAlchemy tables and the functions that read and write them."""

from models.base import Base
from models.tables import ApiKey, Audit, AuditStatus, LayerRow

__all__ = ["ApiKey", "Audit", "AuditStatus", "Base", "LayerRow"]
