"""The one exception the engine raises for a bad network or bad options, with a stable code."""


class AuditError(Exception):
    """A coded, user-facing reason an audit cannot proceed."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A user-facing one-line reason for an exception: its type and the telling line, no traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and lines[0].startswith("The following operation failed"):
        # TorchScript interpreter errors put a traceback first and "SomeError: message" last.
        return lines[-1][:limit]
    return (f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)[:limit]
