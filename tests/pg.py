"""A throw-away PostgreSQL cluster for the tests (and bench/bench_store.py).

`start_cluster()` runs Debian's `initdb` and `pg_ctl` (off the PATH, in /usr/lib/postgresql/<v>/bin)
on a fresh temporary directory, listening only on a unix socket inside it, and returns a
`Cluster` whose `url()` psycopg can open; `stop()` stops it (`pg_ctl stop -m fast`) and removes the
directory. initdb refuses to run as root, so as root (CI) the directory is handed to the `postgres`
user that Debian's package creates and both commands run as that user (`runuser`).

Fixtures:
- `pg_cluster` (session): one cluster per pytest process; each pytest-xdist worker starts its own
  (its own temporary directory, hence its own socket).
- `pg_url` (function): a fresh, empty database in that cluster, so tests never see each other's rows.

A missing PostgreSQL FAILS the tests that need it (it is part of what they test): the message says
how to install it (`bash .ci/ensure-postgres`, which the README's test command runs).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = (
    "PostgreSQL's server programs (initdb, pg_ctl) are not installed; install them with"
    " `bash .ci/ensure-postgres` (as root: apt-get update && apt-get install -y postgresql)"
)
ADMIN_DB = "postgres"
USER = "sl2s"


class PostgresMissing(RuntimeError):
    pass


def server_bin() -> Path:
    """The directory holding initdb and pg_ctl: from the PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [
            int(x) for x in Path(p).parent.parent.name.split(".") if x.isdigit()
        ],
    )
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresMissing(INSTALL_HINT)


@dataclass
class Cluster:
    root: Path  # temporary directory: data/, the socket, server.log
    bindir: Path
    port: int
    as_user: list[
        str
    ]  # command prefix that runs as the cluster's owner ([] when not root)
    _db_numbers = itertools.count(1)

    @property
    def socket_dir(self) -> str:
        return str(self.root)

    def url(self, database: str = ADMIN_DB) -> str:
        return (
            f"postgresql://{USER}@/{database}?host={self.socket_dir}&port={self.port}"
        )

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}{os.getpid()}_{next(self._db_numbers)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        _run(
            self.as_user
            + [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.root / "data"),
                "stop",
                "-m",
                "fast",
                "-w",
            ],
            self.root,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        cmd,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done


def start_cluster(*, fsync: bool = False, port: int = 5432) -> Cluster:
    """initdb + pg_ctl start in a new temporary directory (unix socket only, trust auth for the
    socket's user). `fsync=False` for tests (nothing needs to survive a power loss); benches
    measuring commits pass True. Raises PostgresMissing when the server is not installed.
    """
    bindir = server_bin()
    # /tmp when root (the postgres user must reach it) or when TMPDIR is long (a unix socket's
    # path must fit in ~100 bytes)
    base = tempfile.gettempdir()
    if os.geteuid() == 0 or len(base) > 40:
        base = "/tmp"
    root = Path(tempfile.mkdtemp(prefix="sl2s-pg-", dir=base))
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            raise PostgresMissing(
                "running as root, but there is no `postgres` user to run the cluster as; "
                + INSTALL_HINT
            ) from None
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    try:
        _run(
            as_user
            + [str(bindir / "initdb"), "-D", str(root / "data"), "-U", USER, "--auth=trust",
               "--encoding=UTF8", "--locale=C", "--no-sync"],
            root,
        )  # fmt: skip
        options = (
            f"-k {root} -c listen_addresses='' -p {port} -c max_connections=200"
            f" -c fsync={'on' if fsync else 'off'}"
            + ("" if fsync else " -c synchronous_commit=off -c full_page_writes=off")
        )
        _run(
            as_user
            + [str(bindir / "pg_ctl"), "-D", str(root / "data"), "-o", options, "-l",
               str(root / "server.log"), "-w", "-t", "60", "start"],
            root,
        )  # fmt: skip
    except BaseException:
        log = root / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        if tail:
            print(tail)
        raise
    return Cluster(root=root, bindir=bindir, port=port, as_user=as_user)


@pytest.fixture(scope="session")
def pg_cluster():
    missing = None
    try:
        cluster = start_cluster()
    except PostgresMissing as error:
        missing = str(error)
    if missing:  # fail, not skip: the store's tests are part of what CI must prove
        pytest.fail(missing, pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The URL of a fresh, empty database (no password; a unix socket in the cluster's dir)."""
    return pg_cluster.create_database()
