"""Local target services for bench/ack_latency.py: a health endpoint and a feature-flag admin API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

FLAGS: dict[str, dict[str, object]] = {}


async def health(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "database": "connected"})


async def set_flag(request: Request) -> JSONResponse:
    data = await request.json()
    FLAGS[str(data.get("name"))] = data
    return JSONResponse(data)


async def get_flag(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    return JSONResponse(FLAGS.get(name, {"name": name, "enabled": True, "kill_switch": False}))


asgi = Starlette(routes=[
    Route("/health", health),
    Route("/admin/flags", set_flag, methods=["POST"]),
    Route("/admin/flags/{name}", get_flag),
])
