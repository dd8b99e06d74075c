"""The smoke script behind ./scripts/smoke (and the demo's smoke suite): GET each health URL of an
environment, pass when every one answers 2xx (and, when it answers JSON with a `status`, that status is
healthy/ok). Prints one line per URL and a summary; exit 0 when all pass, 1 when any fails, 2 on usage errors.

    SMOKE_BASE_URL=https://api.example.com ./scripts/smoke --env prod
    ./scripts/smoke --env staging --url https://staging-api.example.com/health

URLs: `--url` (repeatable), else SMOKE_BASE_URL joined with each of SMOKE_PATHS (comma-separated, default
`/health`). SMOKE_API_KEY, when set, is sent as `Authorization: Bearer …` (and never printed). Standard
library only, so it runs with any Python 3.11+."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

HEALTHY = {"healthy", "ok", "pass", "up"}


def urls_from(args: argparse.Namespace, environ: dict[str, str] | os._Environ[str]) -> list[str]:
    if args.url:
        return list(args.url)
    base = environ.get("SMOKE_BASE_URL", "").strip().rstrip("/")
    if not base:
        return []
    paths = [p.strip() for p in environ.get("SMOKE_PATHS", "/health").split(",") if p.strip()]
    return [base + (p if p.startswith("/") else "/" + p) for p in paths]


def probe(url: str, *, timeout: float, api_key: str | None) -> tuple[bool, str]:
    """(passed, what happened) for one GET of `url`."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "opsbot-smoke"})
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read(100_000)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(100_000)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"unreachable ({reason})"
    took = f"{(time.monotonic() - started) * 1000:.0f} ms"
    data: Any = None
    with contextlib.suppress(ValueError):
        data = json.loads(body)
    detail = ""
    if isinstance(data, dict):
        parts = [f"{key}={data[key]}" for key in ("status", "database", "error") if isinstance(data.get(key), str)]
        detail = " " + ", ".join(parts) if parts else ""
    if not 200 <= status < 300:
        return False, f"HTTP {status}{detail} ({took})"
    if isinstance(data, dict) and isinstance(data.get("status"), str) and data["status"].lower() not in HEALTHY:
        return False, f"HTTP {status} but{detail} ({took})"
    return True, f"HTTP {status}{detail} ({took})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smoke", description="GET an environment's health URLs; exit 0 if all pass")
    parser.add_argument("--env", default=os.environ.get("SMOKE_ENV", "prod"), help="environment (for the summary)")
    parser.add_argument("--url", action="append", help="a URL to check (repeatable; default SMOKE_BASE_URL/health)")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("SMOKE_TIMEOUT", "10")))
    args = parser.parse_args(argv)
    urls = urls_from(args, os.environ)
    if not urls:
        print("smoke: no URLs to check: set SMOKE_BASE_URL (and SMOKE_PATHS) or pass --url", file=sys.stderr)
        return 2
    api_key = os.environ.get("SMOKE_API_KEY") or None
    failed = 0
    for url in urls:
        passed, what = probe(url, timeout=args.timeout, api_key=api_key)
        failed += not passed
        print(f"{'PASS' if passed else 'FAIL'}  {url}  {what}", flush=True)
    verdict = "passed" if not failed else "FAILED"
    print(f"smoke {args.env}: {verdict} ({len(urls) - failed}/{len(urls)} URLs healthy)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
