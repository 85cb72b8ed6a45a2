"""A real single-node SLURM cluster on this machine, for the tests that drive the scheduler.

    python tests/slurm_cluster.py start [--no-accounting] [--root DIR]
    python tests/slurm_cluster.py stop --root DIR

Debian's ``slurm-wlm`` and ``munge`` (and, for accounting, ``slurmdbd`` and ``mariadb-server``;
``.ci/run`` installs them) run as root without systemd: every daemon is started detached with a
PID file under ``root`` and stopped by PID in reverse order. ``slurm.conf`` is written from
``slurmd -C`` (this host, 85% of its memory) with two partitions on it, ``cpu`` (the default)
and ``gpu``, and no GRES, so a job that asks for a GPU is refused at ``sbatch`` as on a CPU-only
cluster. The configuration is linked at SLURM's default path, ``/etc/slurm/slurm.conf``, as on
a real cluster: the executor plugin's job step drops every ``SLURM_*`` variable, ``SLURM_CONF``
included, before it calls ``srun`` inside the job (an existing file that is not ours is never
touched; the cluster then refuses to start). ``MinJobAge=300``: a finished job stays visible to
``squeue`` for five minutes, as on most sites.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["unavailable", "SlurmCluster"]

DAEMONS = ("slurmd", "slurmctld", "munge")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
ACCOUNTING_DAEMONS = ("slurmdbd", "mariadbd", "mariadb-install-db")


def unavailable(accounting: bool = True) -> str | None:
    """Why a cluster cannot run here (None when it can): root and the Debian packages."""
    if os.geteuid() != 0:
        return "the SLURM daemons need root (CI runs these tests as root)"
    need = list(DAEMONS[:2]) + ["munged", "sbatch", "squeue", "scancel"]
    if accounting:
        need += ["slurmdbd", "mariadbd", "mariadb-install-db", "sacct"]
    missing = [n for n in need if shutil.which(n) is None
               and not Path("/usr/sbin", n).exists()]
    if missing:
        return (f"SLURM is not installed ({', '.join(missing)} missing): apt-get install "
                f"slurm-wlm munge slurmdbd mariadb-server (.ci/run does)")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(what: str, check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


def _run(*cmd, env=None, check=True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                           f"{proc.stdout[-1000:]}{proc.stderr[-1000:]}")
    return proc


class SlurmCluster:
    """One node (this host), partitions ``cpu`` and ``gpu``; ``accounting`` adds slurmdbd with
    MariaDB, so ``sacct`` answers (without it every ``sacct`` query fails)."""

    def __init__(self, root: str | os.PathLike | None = None, *, accounting: bool = True):
        self.root = Path(root or tempfile.mkdtemp(prefix="ecdp-slurm-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.accounting = accounting
        self.conf = self.root / "slurm.conf"
        self.ports = {k: _free_port() for k in ("ctld", "slurmd", "dbd", "mysql")}
        self.started: list[tuple[str, Path]] = []  # (daemon, PID file), in start order
        self.children: list[subprocess.Popen] = []  # daemons that do not detach themselves

    @property
    def env(self) -> dict:
        """The environment for client commands and the jobs (which inherit it)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------------ daemons

    def _start(self, name: str, cmd: list[str], pidfile: Path, *, daemonizes: bool) -> None:
        pidfile.unlink(missing_ok=True)
        if daemonizes:
            _run(*cmd, env=self.env)
        else:
            log = open(self.root / f"{name}.out", "w")
            self.children.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log,
                                                  start_new_session=True))
        self.started.append((name, pidfile))
        _wait(f"{name} (PID file {pidfile})", pidfile.exists)

    def _munge(self) -> None:
        if _run("sh", "-c", "munge -n | unmunge", check=False).returncode == 0:
            return  # already running (another cluster, or the system's)
        run = Path("/run/munge")
        run.mkdir(parents=True, exist_ok=True)
        shutil.chown(run, "munge", "munge")
        self._start("munge", ["runuser", "-u", "munge", "--", "munged"], run / "munged.pid",
                    daemonizes=True)
        _wait("munge", lambda: _run("sh", "-c", "munge -n | unmunge",
                                    check=False).returncode == 0)

    def _mariadb(self) -> None:
        data = self.root / "mysql"
        if not data.exists():
            _run("mariadb-install-db", "--user=root", f"--datadir={data}",
                 "--auth-root-authentication-method=socket", "--skip-test-db")
        sock = self.root / "mysql.sock"
        self._start("mariadbd", ["mariadbd", "--user=root", f"--datadir={data}",
                                 f"--socket={sock}", f"--pid-file={self.root / 'mysql.pid'}",
                                 "--bind-address=127.0.0.1", f"--port={self.ports['mysql']}",
                                 "--skip-name-resolve"],
                    self.root / "mysql.pid", daemonizes=False)
        sql = ("CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';"
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';FLUSH PRIVILEGES;")
        _wait("mariadb", lambda: _run("mariadb", f"--socket={sock}", "-e", sql,
                                      check=False).returncode == 0)

    def _slurmdbd(self) -> None:
        dbd = self.root / "slurmdbd.conf"
        dbd.write_text("\n".join([
            "AuthType=auth/munge", "DbdHost=localhost", f"DbdPort={self.ports['dbd']}",
            "SlurmUser=root", f"LogFile={self.root / 'slurmdbd.log'}",
            f"PidFile={self.root / 'slurmdbd.pid'}", "StorageType=accounting_storage/mysql",
            "StorageHost=127.0.0.1", f"StoragePort={self.ports['mysql']}",
            "StorageUser=slurm", "StoragePass=slurm", "StorageLoc=slurm_acct_db", ""]))
        dbd.chmod(0o600)
        self._start("slurmdbd", ["slurmdbd"], self.root / "slurmdbd.pid", daemonizes=True)
        _wait("slurmdbd (its port)", lambda: _listening(self.ports["dbd"]))

    def _node_line(self) -> str:
        line = _run("slurmd", "-C").stdout.splitlines()[0]
        memory = int(re.search(r"RealMemory=(\d+)", line).group(1))
        return re.sub(r"RealMemory=\d+", f"RealMemory={int(memory * 0.85)}", line)

    def write_conf(self) -> None:
        node = self._node_line()
        name = re.search(r"NodeName=(\S+)", node).group(1)
        accounting = ([f"AccountingStorageType=accounting_storage/slurmdbd",
                       "AccountingStorageHost=localhost",
                       f"AccountingStoragePort={self.ports['dbd']}",
                       "JobAcctGatherType=jobacct_gather/linux"] if self.accounting else
                      ["AccountingStorageType=accounting_storage/none",
                       "JobAcctGatherType=jobacct_gather/none"])
        for d in ("state", "spool"):
            (self.root / d).mkdir(exist_ok=True)
        self.conf.write_text("\n".join([
            "ClusterName=ecdptest", f"SlurmctldHost={name}", "SlurmUser=root",
            "SlurmdUser=root", f"SlurmctldPort={self.ports['ctld']}",
            f"SlurmdPort={self.ports['slurmd']}", "AuthType=auth/munge",
            f"StateSaveLocation={self.root / 'state'}", f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.root / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "MpiDefault=none", "MinJobAge=300", "ReturnToService=2",
            "SchedulerType=sched/backfill", "SlurmctldTimeout=30", "SlurmdTimeout=30",
            "JobCompType=jobcomp/none", *accounting,
            f"{node} State=UNKNOWN",
            f"PartitionName=cpu Nodes={name} Default=YES MaxTime=INFINITE State=UP",
            f"PartitionName=gpu Nodes={name} MaxTime=INFINITE State=UP", ""]))
        if SYSTEM_CONF.is_symlink() or not SYSTEM_CONF.exists():
            SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
            SYSTEM_CONF.unlink(missing_ok=True)
            SYSTEM_CONF.symlink_to(self.conf)
        elif SYSTEM_CONF.resolve() != self.conf.resolve():
            raise RuntimeError(f"{SYSTEM_CONF} exists and is not a test cluster's link: this "
                               f"machine has a SLURM of its own; not touching it")

    def start(self) -> "SlurmCluster":
        """munge, (MariaDB, slurmdbd,) slurmctld, slurmd; returns when the node is idle."""
        try:
            self._munge()
            if self.accounting:
                self._mariadb()
                self._slurmdbd()
            self.write_conf()
            self._start("slurmctld", ["slurmctld", "-i"], self.root / "slurmctld.pid",
                        daemonizes=True)
            self._start("slurmd", ["slurmd"], self.root / "slurmd.pid", daemonizes=True)
            _wait("the node (sinfo: idle)", lambda: "idle" in _run(
                "sinfo", "-h", "-o", "%T", env=self.env, check=False).stdout, timeout=90)
            if self.accounting:
                _wait("accounting (sacct)", lambda: _run(
                    "sacct", "-n", "-X", env=self.env, check=False).returncode == 0)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop what this cluster started, by PID, in reverse order (bounded waits)."""
        for name, pidfile in reversed(self.started):
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                os.kill(pid, signal.SIGKILL)
        self.started.clear()
        if SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == self.conf.resolve():
            SYSTEM_CONF.unlink()
        for child in self.children:
            child.wait(timeout=20)
        self.children.clear()

    def restart(self, *, accounting: bool) -> "SlurmCluster":
        """Stop every daemon and start again, with or without accounting (a few seconds)."""
        self.stop()
        self.accounting = accounting
        return self.start()

    def logs(self) -> str:
        """The daemons' log tails, for a failing test's message."""
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}"
                         for p in sorted(self.root.glob("*.log")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--root", help="the cluster's folder (state, logs, PID files)")
    parser.add_argument("--no-accounting", action="store_true",
                        help="no slurmdbd: sacct fails, as on a cluster without accounting")
    args = parser.parse_args(argv)
    if args.action == "start":
        reason = unavailable(not args.no_accounting)
        if reason:
            parser.error(reason)
        cluster = SlurmCluster(args.root, accounting=not args.no_accounting).start()
        (cluster.root / "started").write_text("\n".join(f"{n} {p}" for n, p in cluster.started))
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    root = Path(args.root)
    cluster = SlurmCluster(root)
    cluster.started = [(n, Path(p)) for n, p in (line.split() for line in
                                                 (root / "started").read_text().splitlines())]
    cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
