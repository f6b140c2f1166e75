"""The bubblewrap command line that closes a sandbox, and the check that it works on this machine.

What a sandbox gets: new PID, network, IPC, UTS and cgroup namespaces (no network at all: only
its own loopback, with nothing listening); uid/gid 65534 (nobody) with no capability. Started
by root, the sandbox drops to the host's real uid 65534 (``setpriv``; bwrap keeps only the two
capabilities that takes), so its processes are nobody's on the host too and the kernel applies
RLIMIT_NPROC (it never limits root's processes). Started by any other user, it gets a user
namespace where it is 65534 (the host sees the server's own uid). Either way: an empty environment apart from a few fixed variables (no variable of the
server, so no API key, ever reaches it); read-only binds of the system's /usr, /lib, /bin, the
Python installation and (optionally) the running environment's site-packages; its own /proc and
a minimal /dev; one private writable tmpfs at /tmp (size-capped); no other path of the host.
``--die-with-parent`` ends it with the process that started it, ``--new-session`` keeps it off
the server's terminal. Resource limits are applied by the sandboxed process itself, before any
code it is given runs (:mod:`llm_tts.sandbox.worker_main`).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llm_tts.errors import SandboxUnavailableError

SANDBOX_UID = 65534  # "nobody": owns nothing anywhere
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",  # set order is part of the state a replay must rebuild
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
}
WORKER_SOURCE = (Path(__file__).parent / "worker_main.py").read_text()
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime")


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one execution (replayed blocks included). The wall timeout is per request."""

    cpu_seconds: int = 60  # RLIMIT_CPU: CPU time of the whole sandboxed process
    memory_bytes: int = 1 << 30  # RLIMIT_AS: address space (a MemoryError past it)
    processes: int = 64  # RLIMIT_NPROC: processes and threads of uid 65534 (all sandboxes, when root starts them)
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: largest file it may write
    open_files: int = 64  # RLIMIT_NOFILE
    output_bytes: int = 1 << 20  # stdout + stderr read back; past it the sandbox is killed
    tmp_bytes: int = 64 << 20  # size of its private /tmp

    def rlimits(self) -> dict[str, int]:
        return {
            "cpu_seconds": self.cpu_seconds,
            "memory_bytes": self.memory_bytes,
            "processes": self.processes,
            "file_bytes": self.file_bytes,
            "open_files": self.open_files,
        }


@dataclass(frozen=True)
class SandboxImage:
    """What a sandbox can see of the host: the interpreter and the import paths it may read."""

    python: str  # the interpreter's real path
    read_only: tuple[str, ...]  # host paths bound read-only at the same place
    import_paths: tuple[str, ...]  # prepended to sys.path inside

    @classmethod
    def current(cls, site_packages: bool = True) -> SandboxImage:
        """This process's Python (resolved past venv links) and, optionally, its site-packages."""
        python = os.path.realpath(sys.executable)
        base = os.path.realpath(sys.base_prefix)
        paths = [base]
        imports: list[str] = []
        if site_packages:
            for key in ("purelib", "platlib"):
                p = os.path.realpath(sysconfig.get_paths()[key])
                if os.path.isdir(p) and p not in imports:
                    imports.append(p)
        paths += [p for p in imports if not p.startswith(base + os.sep)]
        return cls(python, tuple(paths), tuple(imports))


def bwrap_path() -> str:
    """The bwrap executable, or SandboxUnavailableError saying how to install it."""
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailableError(
            "bubblewrap (bwrap) is not installed; install it (Debian/Ubuntu: apt-get install -y bubblewrap) "
            "to use code_execution"
        )
    return found


def sandbox_command(
    image: SandboxImage, limits: SandboxLimits, python_args: Sequence[str], info_fd: int | None = None
) -> list[str]:
    """The command that runs ``python python_args...`` inside a fresh sandbox; bwrap writes the
    sandbox's first process id (on the host) to ``info_fd`` as JSON."""
    cmd = [bwrap_path(), *(["--info-fd", str(info_fd)] if info_fd is not None else [])]
    cmd += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if os.geteuid() == 0:
        cmd += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]  # for setpriv only
    else:  # required, not "try": without a user namespace there is no unprivileged uid
        cmd += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL"]
    cmd += [
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ]
    for key, value in SANDBOX_ENV.items():
        cmd += ["--setenv", key, value]
    for d in _SYSTEM_DIRS:
        cmd += ["--ro-bind-try", d, d]
    for f in _SYSTEM_FILES:
        cmd += ["--ro-bind-try", f, f]
    for p in image.read_only:
        for parent in reversed(Path(p).parents[:-1]):  # mount points readable by nobody (bwrap copies 0700)
            cmd += ["--perms", "0755", "--dir", str(parent)]
        cmd += ["--ro-bind", p, p]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    cmd += ["--remount-ro", "/", "--chdir", "/tmp"]
    if os.geteuid() == 0:
        uid = str(SANDBOX_UID)
        cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--"]
    return [*cmd, image.python, *python_args]


def worker_command(image: SandboxImage, limits: SandboxLimits, control_fd: int, info_fd: int) -> list[str]:
    """The command that starts one worker (:mod:`llm_tts.sandbox.worker_main`) in a fresh sandbox."""
    args = ["-I", "-c", WORKER_SOURCE, str(control_fd), json.dumps(limits.rlimits()), *image.import_paths]
    return sandbox_command(image, limits, args, info_fd)


def check_sandbox(image: SandboxImage) -> None:
    """SandboxUnavailableError unless bwrap is installed and can start a sandbox for ``image``."""
    bwrap_path()
    _probe(image)


@functools.lru_cache(maxsize=4)
def _probe(image: SandboxImage) -> None:
    """Start one sandbox that prints its uid (once per image when it works)."""
    probe = sandbox_command(image, SandboxLimits(), ["-I", "-c", "import os; print(os.getuid())"])
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SandboxUnavailableError(f"bubblewrap could not start a sandbox: {e}") from None
    if done.returncode != 0 or done.stdout.strip() != str(SANDBOX_UID):
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise SandboxUnavailableError(
            f"bubblewrap cannot create the sandbox's namespaces on this machine ({why[0]}); code_execution needs "
            "user namespaces (root, or sysctl kernel.unprivileged_userns_clone=1; a container must be allowed to "
            "create them)"
        )
