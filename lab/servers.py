"""Real servers as child processes: Mosquitto, InfluxDB 1.x, VictoriaMetrics, net-snmp snmpd.

Each gets a generated config in its own temp dir, listens on a free port of the
address it is given (127.0.0.1 unless a test host's address is asked for), and
is stopped by whoever started it. A server that fails to come up raises
`ServerError` carrying the tail of its own log. `restart()` keeps the port and
the data dir, for broker-restart and database-outage tests.

Used by the tests' fixtures, the demo and the benchmarks alike.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable


class ServerError(RuntimeError):
    pass


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def missing_binaries(*names: str) -> list[str]:
    return [n for n in names if shutil.which(n) is None and not Path("/usr/sbin", n).exists()]


def _binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path("/usr/sbin", name).exists() else None)
    if not found:
        raise ServerError(f"{name} is not installed (Debian: apt-get install {DEBIAN_PACKAGES.get(name, name)})")
    return found


DEBIAN_PACKAGES = {"mosquitto": "mosquitto", "influxd": "influxdb", "victoria-metrics": "victoria-metrics",
                   "snmpd": "snmpd", "dnsmasq": "dnsmasq-base"}


class Server:
    """A child-process server with a temp dir, a port, readiness check and log."""

    name = "server"
    start_timeout = 30.0

    def __init__(self, host: str = "127.0.0.1", workdir: str | Path | None = None) -> None:
        self.host = host
        self._own_tmp = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix=f"cw-{self.name}-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    # subclasses: write config, return argv; and say when ready
    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> "Server":
        argv = self.command()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                                     env=self.environment(), start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode} during start; "
                                  f"command {' '.join(argv)}; its log:\n{self.log_tail()}")
            if self.ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} not ready after {self.start_timeout:.0f} s; its log:\n{self.log_tail()}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_tmp:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Server":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _tcp_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False


def _udp_bound(port: int, pid: int | None = None) -> bool:
    """True once some socket is bound to UDP `port` in this network namespace, or in process `pid`'s."""
    port_hex = f":{port:04X}"
    table = Path(f"/proc/{pid}/net/udp" if pid else "/proc/net/udp")
    try:
        return any(line.split()[1].endswith(port_hex) for line in table.read_text().splitlines()[1:])
    except OSError:
        return False


def _http_ok(url: str, accept: Callable[[int], bool] = lambda s: s < 300) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return accept(resp.status)
    except (urllib.error.URLError, OSError):
        return False


class Mosquitto(Server):
    """Mosquitto 2 with persistence; optional password and ACL files (per-clinic credentials)."""

    name = "mosquitto"

    def __init__(self, host: str = "127.0.0.1", password_file: Path | None = None, acl_file: Path | None = None,
                 extra_config: str = "", tls: tuple[Path, Path, Path] | None = None, **kw: object) -> None:
        """`tls`: (CA file, certificate, key) to serve MQTT over TLS on the listener."""
        super().__init__(host, **kw)  # type: ignore[arg-type]
        self.password_file, self.acl_file, self.extra_config = password_file, acl_file, extra_config
        self.tls = tls

    def command(self) -> list[str]:
        if not self.port:
            self.port = free_port(host=self.host)
        persistence = self.dir / "data"
        persistence.mkdir(exist_ok=True)
        lines = [f"listener {self.port} {self.host}"]
        if self.tls:
            ca, cert, key = self.tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}", "tls_version tlsv1.2"]
        lines += [
            "persistence true",
            f"persistence_location {persistence}/",
            "autosave_interval 1",
            f"log_dest file {self.log_path}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "max_queued_messages 1000000",
            "max_inflight_messages 0",
            "max_packet_size 1048576",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto switches to user "mosquitto", who cannot write our temp dir:
            # the log and, silently, the persistence file would be lost.
            lines.append("user root")
        if self.password_file:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        conf = self.dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n" + self.extra_config)
        return [_binary("mosquitto"), "-c", str(conf)]

    def ready(self) -> bool:
        return self._tcp_open()


class InfluxDB(Server):
    """InfluxDB 1.x (Debian's 1.6.7): v1 /write and InfluxQL /query."""

    name = "influxd"

    def command(self) -> list[str]:
        if not self.port:
            self.port = free_port(host=self.host)
            self.rpc_port = free_port(host=self.host)
        conf = self.dir / "influxdb.conf"
        conf.write_text(f"""
reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"
[meta]
  dir = "{self.dir}/meta"
[data]
  dir = "{self.dir}/data"
  wal-dir = "{self.dir}/wal"
  query-log-enabled = false
[http]
  bind-address = "{self.host}:{self.port}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
""")
        return [_binary("influxd"), "-config", str(conf)]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/ping")

    def query(self, q: str, db: str | None = None, method: str = "GET", epoch: str = "ms") -> dict:
        """Run InfluxQL and return the decoded JSON (times in `epoch` units); raise ServerError on an error."""
        import json

        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params)
        if method == "POST":
            req = urllib.request.Request(f"{self.url}/query", data=data.encode(), method="POST")
        else:
            req = urllib.request.Request(f"{self.url}/query?{data}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.load(resp)
        errors = [r["error"] for r in body.get("results", []) if "error" in r]
        if errors or "error" in body:
            raise ServerError(f"InfluxQL {q!r} failed: {errors or body['error']}")
        return body

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"', method="POST")

    def write(self, db: str, lines: str, precision: str = "ms") -> None:
        req = urllib.request.Request(f"{self.url}/write?db={db}&precision={precision}", data=lines.encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            if resp.status != 204:
                raise ServerError(f"/write answered {resp.status}")


class VictoriaMetrics(Server):
    """VictoriaMetrics single node: accepts influxdb-client's v2 writes; read back with /api/v1/export.

    Started as ClinicWatch needs it: `-dedup.minScrapeInterval=1ms`, so that a point written twice
    (a batch the collector retries after a write whose answer it never got) is one point, as in
    InfluxDB; by default VictoriaMetrics keeps both."""

    name = "victoria-metrics"

    def command(self) -> list[str]:
        if not self.port:
            self.port = free_port(host=self.host)
        return [_binary("victoria-metrics"), f"-storageDataPath={self.dir}/data",
                f"-httpListenAddr={self.host}:{self.port}", "-retentionPeriod=100y", "-loggerOutput=stdout",
                "-search.latencyOffset=0s", "-search.disableCache", "-dedup.minScrapeInterval=1ms"]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/health")

    def export(self, match: str) -> list[dict]:
        """All raw samples of the series matching a selector, as /api/v1/export's JSON lines."""
        import json

        _http_ok(f"{self.url}/internal/force_flush")
        url = f"{self.url}/api/v1/export?" + urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(url, timeout=30) as resp:
            return [json.loads(line) for line in resp.read().splitlines() if line.strip()]


class Snmpd(Server):
    """net-snmp snmpd on UDP, with a caller-given config body (communities, users, pass, override)."""

    name = "snmpd"

    def __init__(self, config: str = "rocommunity public 127.0.0.1\n", host: str = "127.0.0.1",
                 exclude_modules: tuple[str, ...] = (), persistent: bool = False, **kw: object) -> None:
        super().__init__(host, **kw)  # type: ignore[arg-type]
        self.config = config
        self.exclude_modules = exclude_modules  # built-in MIB modules to leave out (a pass program serves them)
        # As a real device's snmpd: it reads back what it saved at its last stop (its SNMPv3 engine id, and
        # its engine boots, counted up at each start). Without it, each start is a new engine, boots 1.
        self.persistent = persistent

    def command(self) -> list[str]:
        if not self.port:
            self.port = free_port(socket.SOCK_DGRAM, host=self.host)
        (self.dir / "state").mkdir(exist_ok=True)
        conf = self.dir / "snmpd.conf"
        conf.write_text(self.config)
        # -C: only our config (persistent: the config path, our directory then the state, says so instead);
        # -I -smux: no SMUX listener on TCP 199; the address only on the command line.
        config = [] if self.persistent else ["-C", "-c", str(conf)]
        return [_binary("snmpd"), "-f", "-Lo", *config, "-I", ",".join(["-smux", *self.exclude_modules]),
                "-p", str(self.dir / "pid"), f"udp:{self.host}:{self.port}"]

    def environment(self) -> dict[str, str]:
        paths = {"SNMPCONFPATH": f"{self.dir}:{self.dir / 'state'}"} if self.persistent else {}
        return {**os.environ, "SNMP_PERSISTENT_DIR": str(self.dir / "state"), "MIBS": "", **paths}

    def ready(self) -> bool:
        # snmpd binds its socket only after it has read the config, so a bound port means ready.
        return _udp_bound(self.port)




class Dnsmasq(Server):
    """dnsmasq as an authoritative-looking resolver serving fixed answers, nothing forwarded."""

    name = "dnsmasq"

    def __init__(self, records: dict[str, str], host: str = "127.0.0.1", options: tuple[str, ...] = (),
                 **kw: object) -> None:
        """`records`: name -> address (A or AAAA); `options`: further dnsmasq options (--mx-host=...)."""
        super().__init__(host, **kw)  # type: ignore[arg-type]
        self.records = records
        self.options = options

    def command(self) -> list[str]:
        if not self.port:
            self.port = free_port(socket.SOCK_DGRAM, host=self.host)
        answers = [f"--address=/{name}/{address}" for name, address in self.records.items()]
        return [_binary("dnsmasq"), "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                f"--port={self.port}", f"--listen-address={self.host}", "--bind-interfaces",
                "--user=root", "--group=root", f"--pid-file={self.dir / 'pid'}", f"--log-facility={self.log_path}",
                "--log-queries", *answers, *self.options]

    def ready(self) -> bool:
        return _udp_bound(self.port)
