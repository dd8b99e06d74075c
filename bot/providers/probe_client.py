"""The HTTP client of health checks (`http` and `rate_limit` checks): one aiohttp session per process.

Why aiohttp here when the rest of opsbot's outbound HTTP is httpx: a `/health` over a hundred endpoints
makes a hundred requests at once, and each httpx request cost 1.2 ms of CPU against aiohttp's 0.4 ms
(its parser is C; measured side by side against one local target, 100 requests at once, `bench/README.md`),
which on a two-core replica was most of the time a round took beyond the targets' own. The alert engine's
metric sources use aiohttp for the same reason (bot/providers/metrics_base.py).

What a target sees is what it saw from httpx: the same TLS trust (the SSL context httpx would build,
certifi's bundle or SSL_CERT_FILE / SSL_CERT_DIR), an HTTP proxy from HTTP(S)_PROXY and NO_PROXY (read when
the session is made), no redirects followed, `User-Agent: opsbot`. The session is made on first use, inside
the running event loop, and closed with the app."""

from __future__ import annotations

import urllib.request
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx


class Probes:
    def __init__(self, *, connections: int = 200) -> None:
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.connections, ssl=httpx.create_ssl_context(trust_env=True))
            # Not aiohttp's trust_env: it reads ~/.netrc and the proxy variables in a thread for every request
            # (two thread hops, a tenth of a hundred-check round's CPU). The variables are read once instead.
            self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": "opsbot"})
            self._proxies = {scheme: url for scheme, url in urllib.request.getproxies_environment().items()
                             if scheme in ("http", "https")}
        return self._session

    def request(self, method: str, url: str, *, headers: dict[str, str], timeout: float) -> Any:
        """`async with probes.request(...) as response:` one request, its answer not followed if a redirect."""
        session = self.session
        return session.request(method, url, headers=headers, allow_redirects=False, proxy=self.proxy_for(url),
                               timeout=aiohttp.ClientTimeout(total=timeout))

    def proxy_for(self, url: str) -> str | None:
        """HTTP_PROXY / HTTPS_PROXY for the URL's scheme, unless NO_PROXY names its host (as httpx does)."""
        if not self._proxies:
            return None
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme)
        if proxy is None or urllib.request.proxy_bypass(parts.netloc.rpartition("@")[2]):
            return None
        return proxy

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Probes:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
