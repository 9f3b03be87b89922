"""Guest exceptions as Python exceptions raised by translated code and helpers."""

from __future__ import annotations

#: Vectors whose delivery pushes an error code.
WITH_ERROR_CODE = frozenset((8, 10, 11, 12, 13, 14, 17))
#: Contributory exceptions (a second one while delivering one of these is #DF).
CONTRIBUTORY = frozenset((0, 10, 11, 12, 13))


class Fault(Exception):  # noqa: N818 - a guest exception, not a Python error
    """An architectural exception: vector and error code (None when the vector has none)."""

    def __init__(self, vector: int, code: int | None = None) -> None:
        super().__init__(vector, code)
        self.vector = vector
        self.code = code
