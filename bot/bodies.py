"""Request bodies read with a size limit enforced while reading: a too-large Content-Length is refused before
anything is read, and a body without one (chunked) is counted as it arrives and refused at the first byte
over the limit. Nothing larger than the limit is ever held in memory."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse


class TooLarge(Exception):
    """The body is (or says it is) larger than the limit: answered with 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


async def read_body(request: Request, *, limit: int) -> bytes:
    """The whole body, at most `limit` bytes. Raises TooLarge, or starlette's ClientDisconnect when the
    client goes away before the end."""
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > limit:
        raise TooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(exc: TooLarge) -> JSONResponse:
    # Connection: close: the rest of the body is never read, so the connection cannot serve another request.
    return JSONResponse({"error": f"body too large (at most {exc.limit} bytes)"}, status_code=413,
                        headers={"Connection": "close"})
