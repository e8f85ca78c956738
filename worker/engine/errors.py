"""The one exception the engine raises for a bad network or bad options, with a stable code."""


class AuditError(Exception):
    """A coded, user-facing reason an audit cannot proceed."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
