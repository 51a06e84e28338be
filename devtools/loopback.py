"""An aiohttp app served on a local port: the simulator, the local host, the worker's invoke endpoint, test servers."""

from __future__ import annotations

from aiohttp import web


async def serve_app(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host`` (port 0: a free one); the runner, to clean up with, and the port it bound."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, runner.addresses[0][1]
