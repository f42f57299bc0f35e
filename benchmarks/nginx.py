"""A throwaway nginx with ``limit_req`` cells in front of a local upstream.

:func:`nginx_conf` writes one ``nginx.conf`` for a list of :class:`NginxCell` (each its
own ``limit_req_zone`` keyed by the ``Authorization`` header, its own 127.0.0.1 port,
``limit_req_status 429``, a keep-alive upstream); :func:`nginx` runs it as
``nginx -p PREFIX -c CONF -e LOG -g 'daemon off;'`` in a child process with everything
(pid, logs, temp files) under a temporary prefix, and always stops it. The system nginx
configuration is never read or touched.

:func:`find_nginx` looks for the binary (``KEYAPI_TEST_NGINX``, PATH, ``/usr/sbin``);
:func:`ensure_nginx` also tries ``.ci/nginx.sh install`` (Debian's package) once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Seconds nginx gets to accept connections on every cell's port.
_STARTUP_TIMEOUT = 15.0


@dataclass(frozen=True)
class NginxCell:
    """One ``limit_req`` configuration on its own port.

    ``rate`` requests per ``per`` ("s" or "m", nginx's ``r/s`` / ``r/m``); ``burst`` 0
    is nginx's strict default (a request sooner than 1/rate after the last accepted one
    is rejected); ``nodelay`` serves the burst at once instead of queueing it.
    """

    name: str
    port: int
    rate: int
    upstream: str  # host:port of the origin
    per: str = "s"
    burst: int = 0
    nodelay: bool = False

    @property
    def directive(self) -> str:
        """The ``limit_req`` line for this cell."""
        extra = (f" burst={self.burst}" if self.burst else "") + (
            " nodelay" if self.nodelay else ""
        )
        return f"limit_req zone={self.name}{extra};"

    @property
    def url(self) -> str:
        """The base URL a client uses to go through this cell."""
        return f"http://127.0.0.1:{self.port}"


def nginx_conf(prefix: Path, cells: Sequence[NginxCell]) -> str:
    """The nginx.conf text for ``cells``; every path in it is under ``prefix``."""
    if not cells:
        raise ValueError("no cells")
    for cell in cells:
        if not cell.name.isidentifier():
            raise ValueError(f"cell name must be an identifier, got {cell.name!r}")
        if cell.per not in ("s", "m") or cell.rate < 1 or cell.burst < 0:
            raise ValueError(f"bad cell {cell!r}")
    upstreams = sorted({c.upstream for c in cells})
    up_names = {u: f"origin{i}" for i, u in enumerate(upstreams)}
    lines = [
        "worker_processes 1;",
        f"pid {prefix}/nginx.pid;",
        f"error_log {prefix}/error.log warn;",
        "events { worker_connections 4096; }",
        "http {",
        "    access_log off;",
        f"    client_body_temp_path {prefix}/tmp/body;",
        f"    proxy_temp_path {prefix}/tmp/proxy;",
        f"    fastcgi_temp_path {prefix}/tmp/fastcgi;",
        f"    uwsgi_temp_path {prefix}/tmp/uwsgi;",
        f"    scgi_temp_path {prefix}/tmp/scgi;",
        "    limit_req_status 429;",
        # Rejections are the point of the exercise, not errors: keep them out of the log.
        "    limit_req_log_level info;",
        "    keepalive_requests 100000;",
    ]
    for upstream, name in up_names.items():
        lines += [
            f"    upstream {name} {{",
            f"        server {upstream};",
            "        keepalive 128;",
            "    }",
        ]
    for cell in cells:
        # One zone per cell, keyed by the API key: each benchmark run uses a fresh key,
        # so one run's state never leaks into the next.
        lines.append(
            f"    limit_req_zone $http_authorization zone={cell.name}:1m "
            f"rate={cell.rate}r/{cell.per};"
        )
    for cell in cells:
        lines += [
            "    server {",
            f"        listen 127.0.0.1:{cell.port};",
            "        location / {",
            f"            {cell.directive}",
            f"            proxy_pass http://{up_names[cell.upstream]};",
            "            proxy_http_version 1.1;",
            "            proxy_max_temp_file_size 0;",
            '            proxy_set_header Connection "";',
            "        }",
            "    }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def find_nginx() -> str | None:
    """The nginx binary: ``KEYAPI_TEST_NGINX``, then PATH, then ``/usr/sbin/nginx``."""
    env = os.environ.get("KEYAPI_TEST_NGINX")
    if env and os.access(env, os.X_OK):
        return env
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_nginx() -> tuple[str | None, str]:
    """The nginx binary, installing Debian's package via ``.ci/nginx.sh install`` if
    missing; ``(None, why)`` when it cannot be had."""
    exe = find_nginx()
    if exe:
        return exe, ""
    script = REPO / ".ci" / "nginx.sh"
    try:
        proc = subprocess.run(
            ["bash", str(script), "install"], capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nginx not installed and .ci/nginx.sh install failed: {exc}"
    exe = find_nginx()
    if exe:
        return exe, ""
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return None, f"nginx not installed and could not be installed ({tail[0][:200]})"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (free when asked; bind it soon)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def nginx(cells: Sequence[NginxCell], exe: str | None = None) -> Iterator[Path]:
    """Run nginx for ``cells`` in the foreground of a child process; yield its prefix.

    Raises RuntimeError (with the error log's tail) if the configuration is refused or a
    port does not answer within 15 s. The process is stopped when the block exits.
    """
    exe = exe or find_nginx()
    if exe is None:
        raise RuntimeError("nginx not found (run .ci/nginx.sh install)")
    with tempfile.TemporaryDirectory(prefix="keyapi-nginx-") as tmp:
        prefix = Path(tmp)
        # Run as root, nginx's workers drop to "nobody": they must be able to enter the prefix.
        prefix.chmod(0o755)
        (prefix / "tmp").mkdir(mode=0o755)
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_conf(prefix, cells))
        log = prefix / "error.log"
        base = [exe, "-p", str(prefix), "-c", str(conf), "-e", str(log)]
        check = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused its configuration: {check.stderr[-2000:]}")
        proc = subprocess.Popen(
            [*base, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + _STARTUP_TIMEOUT
            pending = [c.port for c in cells]
            while pending:
                pending = [p for p in pending if not _accepts(p)]
                if not pending:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    raise RuntimeError(f"nginx did not start (ports {pending}): {tail}")
                time.sleep(0.05)
            yield prefix
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # SIGTERM is nginx's fast shutdown: the master stops its workers and exits.
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()
