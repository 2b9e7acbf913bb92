"""gunicorn's access log as JSON lines, in the app logs' shape, with the request id (gunicorn.conf.py's
`logger_class`).

One line per request: what an operator greps when Twilio reports a failed webhook (error 11200) is the
status, the time taken and the request id that ties the line to the app's own log lines. The line is built
from the few fields it holds and written straight to the access log's stream: gunicorn's own access log
formats some twenty atoms through the logging machinery, which was a tenth of a webhook's CPU under load.
LOG_FORMAT=text keeps gunicorn's Apache-style line.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import MutableMapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from gunicorn import glogging

if TYPE_CHECKING:
    from gunicorn.config import Config
    from gunicorn.glogging import _AtomsDict  # the stubs' name for gunicorn's atoms, which gunicorn does not name
    from gunicorn.http import Request
    from gunicorn.http.wsgi import Response

from . import UtcTimestamps

# A playback URL carries its signed token in the path: a bearer credential, kept out of the logs.
REDACTED_PREFIXES = ("/media/",)


def redact(path: str) -> str:
    for prefix in REDACTED_PREFIXES:
        if path.startswith(prefix):
            return prefix + "[redacted]"
    return path


class JsonAccessLogger(glogging.Logger):
    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        self.json_lines = os.environ.get("LOG_FORMAT", "json").strip().lower() == "json"
        self.timestamp = UtcTimestamps()

    def access(self, resp: Response, req: Request, environ: MutableMapping[str, Any], request_time: timedelta) -> None:
        if not self.json_lines:
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return
        try:
            line = self.access_line(resp, req, environ, request_time)
        except Exception:  # noqa: BLE001 - a log line never fails a request
            self.exception("could not format the access log line")
            return
        streams = [handler for handler in self.access_log.handlers if isinstance(handler, logging.StreamHandler)]
        if len(streams) != len(self.access_log.handlers):  # syslog or a logconfig: through logging
            self.access_log.info("%s", line)
            return
        for handler in streams:
            handler.acquire()
            try:
                handler.stream.write(line + "\n")
                handler.stream.flush()
            except Exception:  # noqa: BLE001
                handler.handleError(logging.makeLogRecord({"msg": line}))
            finally:
                handler.release()

    def atoms(
        self, resp: Response, req: Request, environ: MutableMapping[str, Any], request_time: timedelta
    ) -> _AtomsDict:
        """gunicorn's own line (LOG_FORMAT=text), with the same paths redacted."""
        atoms = super().atoms(resp, req, environ, request_time)
        path = req.path or ""
        redacted = redact(path)
        if redacted != path:
            atoms["U"] = redacted
            version = cast("tuple[int, int]", req.version)  # set once the request line is parsed, as it is here
            atoms["r"] = f"{req.method} {redacted} HTTP/{version[0]}.{version[1]}"
        return atoms

    def access_line(
        self, resp: Response, req: Request, environ: MutableMapping[str, Any], request_time: timedelta
    ) -> str:
        path = redact(req.path or "")
        status = resp.status_code
        entry: dict[str, Any] = {
            "ts": self.timestamp(time.time()),
            "level": "info",
            "logger": "access",
            "msg": f"{req.method} {path} {status}",
            "method": req.method,
            "path": path,
            "status": status,
            "bytes": resp.sent,
            "ms": round(request_time.total_seconds() * 1000, 1),
            # After ProxyFix (the app's own middleware, which rewrites this same environ): the client, not the
            # router.
            "remote_addr": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        request_id = next((value for name, value in resp.headers if name.lower() == "x-request-id"), None)
        if request_id:
            entry["request_id"] = request_id
        return json.dumps(entry)
