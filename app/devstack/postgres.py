"""A throwaway local Postgres cluster from the server binaries on this machine, run as a non-root user.

`initdb` and `pg_ctl` refuse to run as root, so when we are root every Postgres
binary runs as `nobody` through `runuser`. The cluster listens on 127.0.0.1
only (no Unix socket) with scram-sha-256 passwords for every role.
"""

from __future__ import annotations

import glob
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

UNPRIVILEGED_USER = "nobody"
SUPERUSER = "postgres"
READER_ROLE = "mcp_reader"
DEMO_DATABASE = "mcp_demo"
RUNUSER_PATHS = ("/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser")


class PostgresUnavailable(RuntimeError):
    """No Postgres server binaries here, or the cluster would not start."""


def find_bindir() -> Path | None:
    """Locate initdb/pg_ctl: $PG_BINDIR when set (and only it), else `pg_config --bindir`, else Debian's dirs."""
    if os.environ.get("PG_BINDIR"):
        explicit = Path(os.environ["PG_BINDIR"])
        return explicit if (explicit / "initdb").exists() and (explicit / "pg_ctl").exists() else None
    candidates = []
    if shutil.which("pg_config"):
        result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(result.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def preferred_port(port: int) -> int:
    """`port` when nothing listens on it on 127.0.0.1, else any free port."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def _runuser() -> str:
    """Where `runuser` is; root with a minimal PATH (no /usr/sbin) still finds it, or is told why not."""
    found = shutil.which("runuser") or next((path for path in RUNUSER_PATHS if os.access(path, os.X_OK)), None)
    if found is None:
        raise PostgresUnavailable(f"running as root, Postgres must run as {UNPRIVILEGED_USER} through `runuser` "
                                  f"(util-linux), which is neither on PATH nor in {', '.join(RUNUSER_PATHS)}; run "
                                  "as an ordinary user, install util-linux, or set DB_CONNECTION_STRING")
    return found


class LocalPostgres:
    """One cluster for `base_dir`, reused across runs when it already exists.

    Args:
        base_dir: Holds the superuser password (mode 0600) and, when the unprivileged
            user can reach it, `data/` and the log; otherwise those live in a private
            directory under the system temp dir (a root-only home, such as /root, is not
            traversable by `nobody`).
        port: TCP port on 127.0.0.1; a free one when None.

    Example:
        pg = LocalPostgres(Path(".mcp-tee/pg")); pg.start()
        dsn = pg.provision_demo(reader_password="...")
    """

    def __init__(self, base_dir: Path, *, port: int | None = None) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise PostgresUnavailable("no PostgreSQL server binaries found (pg_config --bindir, PG_BINDIR)")
        self.bindir = bindir
        self.base_dir = base_dir.resolve()
        self.run_dir = _reachable_run_dir(self.base_dir)
        self.data_dir = self.run_dir / "data"
        self.port = port or free_port()
        self._password_file = self.base_dir / "superuser.password"

    @property
    def superuser_password(self) -> str:
        return self._password_file.read_text().strip()

    def dsn(self, user: str, password: str, database: str = DEMO_DATABASE) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self._running():
            # Left over from a run that was killed: its owner is gone (callers hold the state directory's
            # lock, see app/devstack/lock.py), so restart it on our port.
            self.stop()
        self._pg_ctl(
            "start", "-w", "-t", "30", "-l", str(self.run_dir / "postgres.log"),
            "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' -c fsync=off "
                  "-c full_page_writes=off -c synchronous_commit=off",
        )

    def stop(self) -> None:
        if self._running():
            self._pg_ctl("stop", "-w", "-m", "fast")

    def _running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        try:
            self._pg_ctl("status")
        except PostgresUnavailable:  # pg_ctl status exits non-zero when no server runs
            return False
        return True

    def restart(self) -> None:
        self.stop()
        self.start()

    def provision_demo(self, reader_password: str) -> str:
        """Create the demo database, schema and least-privilege reader; return the reader's DSN."""
        admin = self.dsn(SUPERUSER, self.superuser_password, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DATABASE,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DATABASE)))
        with psycopg.connect(self.dsn(SUPERUSER, self.superuser_password), autocommit=True) as conn:
            conn.execute(_sql_resource("schema.sql"))
            conn.execute(_sql_resource("least_privilege.sql"))
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(READER_ROLE), sql.Literal(reader_password)))
        return self.dsn(READER_ROLE, reader_password)

    def _initdb(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self._password_file.write_text(secrets.token_urlsafe(24))
        self._password_file.chmod(0o600)
        pwfile = self.run_dir / "initdb.pw"  # readable by the unprivileged user only during initdb
        pwfile.write_text(self.superuser_password)
        try:
            self._hand_over(pwfile, self.data_dir, self.run_dir)
            self._run([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "-E", "UTF8",
                       "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync", "--no-instructions"])
        finally:
            pwfile.unlink(missing_ok=True)

    def _pg_ctl(self, *args: str) -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args])

    def _run(self, command: list[str]) -> None:
        program = Path(command[0]).name
        if os.geteuid() == 0:
            command = [_runuser(), "-u", UNPRIVILEGED_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")
        if result.returncode != 0:
            raise PostgresUnavailable(f"{program} failed: {result.stderr.strip()[-500:]}")

    @staticmethod
    def _hand_over(*paths: Path) -> None:
        """As root, give the cluster's files to the unprivileged user that runs Postgres."""
        if os.geteuid() != 0:
            return
        import pwd

        user = pwd.getpwnam(UNPRIVILEGED_USER)
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)
        paths[-1].chmod(0o755)


def _reachable_run_dir(base_dir: Path) -> Path:
    """`base_dir` if the unprivileged user can traverse to it, else a stable private dir under /tmp."""
    if os.geteuid() != 0 or all(parent.stat().st_mode & 0o001 for parent in base_dir.parents if parent.exists()):
        return base_dir
    digest = hashlib.sha256(str(base_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"mcp-tee-pg-{digest}"


def _sql_resource(name: str) -> str:
    return resources.files("app.devstack").joinpath(name).read_text()
