"""Run the tests that touch Dovecot or Postfix on the other Debian release, and the operator path on both.

The portal supports Debian 12 (Dovecot 2.3, Postfix 3.7, PostgreSQL 15) and
Debian 13 (Dovecot 2.4, Postfix 3.10, PostgreSQL 17). ``scripts/test`` runs the
whole suite on the release it runs on, then this script:

1. runs the tests marked ``mail_server`` on the other release;
2. on each release, stands up a server as the deployment guide builds it
   (``scripts/guide_server.py``: the real ``/etc/postfix`` and ``/etc/dovecot``,
   PostgreSQL on 5432, Postfix on 25, Dovecot on 143) and follows README
   "Production" on it while mail flows (``tests/test_operator_path.py``).

Each release has a root of its own:

- ``debootstrap`` makes a minimal root of the release once, under
  ``/var/lib/mail-portal-stack/roots/<release>`` (kept for the next run);
- the project's files (those git knows, without ``.venv``) are copied to its
  ``/src``, the host's CA certificates with them, and ``scripts/bootstrap``
  runs there: that release's own PostgreSQL, Dovecot, Postfix, Python and
  requirements;
- the tests run there in a network namespace of its own (``unshare --net``):
  its loopback services use the usual ports without meeting the host's, and
  nothing leaves the machine.

``/proc`` and ``/dev`` are mounted in a private mount namespace (``unshare
--mount``), so they vanish with it and no mount outlives the run.

Run as root:  .venv/bin/python scripts/other_release.py [pytest arguments for step 1]
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOTS = Path(os.environ.get("PORTAL_STACK_DIR", "/var/lib/mail-portal-stack")) / "roots"
MIRROR = "http://deb.debian.org/debian"
OTHER = {"bookworm": "trixie", "trixie": "bookworm"}
POLICY_RC_D = "#!/bin/sh\n# No package may start a daemon in this root: the stack starts its own.\nexit 101\n"


def log(message: str) -> None:
    print(f"other-release: {message}", flush=True)


def this_release() -> str:
    """The codename of the Debian release this machine runs."""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.partition("=")[2].strip().strip('"')
    raise SystemExit("other-release: /etc/os-release names no VERSION_CODENAME")


def run(*args: str, check: bool = True) -> int:
    """Run a command, its output going to ours."""
    result = subprocess.run(list(args), check=False)  # noqa: S603 - fixed programs, argument lists
    if check and result.returncode != 0:
        raise SystemExit(f"other-release: failed ({result.returncode}): {shlex.join(args)}")
    return result.returncode


def in_root(root: Path, command: str, network: bool) -> list[str]:
    """The command line that runs ``command`` (bash) in ``root``, with /proc and /dev mounted privately."""
    proc, dev = shlex.quote(str(root / "proc")), shlex.quote(str(root / "dev"))
    setup = f"mount -t proc proc {proc} && mount --rbind /dev {dev}"
    if not network:
        setup += " && ip link set lo up"
    inner = f"{setup} && exec chroot {shlex.quote(str(root))} /bin/bash -c {shlex.quote(command)}"
    return ["unshare", "--mount", "--fork", *([] if network else ["--net"]), "/bin/sh", "-c", inner]


def ensure_root(release: str) -> Path:
    """Make the release's minimal root once; return its path."""
    root = ROOTS / release
    if (root / "etc" / "os-release").exists():
        return root
    if shutil.which("debootstrap") is None:
        log("installing debootstrap")
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap")
    partial = ROOTS / f"{release}.partial"
    if partial.exists():
        # Only ever a root this script was making, never mounted outside a namespace.
        shutil.rmtree(partial)
    ROOTS.mkdir(parents=True, exist_ok=True)
    log(f"making a minimal Debian {release} root (debootstrap, about a minute)")
    run("debootstrap", "--variant=minbase", "--include=ca-certificates", release, str(partial), MIRROR)
    partial.rename(root)
    return root


def prepare(root: Path) -> None:
    """Trust what the host trusts, keep packages from starting daemons, and copy the project to /src."""
    for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(cert, root / "usr/local/share/ca-certificates" / cert.name)
    (root / "usr/sbin/policy-rc.d").write_text(POLICY_RC_D)
    (root / "usr/sbin/policy-rc.d").chmod(0o755)
    # scripts/guide_server.py replaces /etc/postfix and /etc/dovecot, and does so only where this marker is.
    (root / "etc/mail-portal-throwaway-root").write_text("A root of scripts/other_release.py: /etc may change.\n")
    (root / "etc/mtab").unlink(missing_ok=True)
    (root / "etc/mtab").symlink_to("/proc/self/mounts")
    source = root / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    wanted = {f.decode() for f in files if f}
    if source.exists():
        for path in sorted(source.rglob("*"), reverse=True):
            relative = path.relative_to(source).as_posix()
            top = relative.split("/")[0]
            if top in (".venv", ".cache") or relative in wanted:
                continue
            if path.is_file() or path.is_symlink():
                path.unlink()
    for name in sorted(wanted):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, target)


def stop_processes_in(root: Path, grace: float = 15.0) -> None:
    """End every process running in ``root`` (the stack the tests started there): TERM, then KILL."""
    import signal
    import time

    def inside() -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "root") == str(root):
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = inside()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + wait
        while inside() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not inside():
            return


def bootstrapped_root(release: str) -> Path:
    """The release's root, made once, with the project copied in and scripts/bootstrap run there."""
    root = ensure_root(release)
    prepare(root)
    log(f"installing what the portal needs in the {release} root (scripts/bootstrap)")
    run(*in_root(root, "update-ca-certificates >/dev/null && cd /src && scripts/bootstrap", network=True))
    return root


def run_tests_in(root: Path, environment: str, pytest_args: str) -> int:
    """Run scripts/test with these pytest arguments in the root, offline; stop what it started; its status."""
    # PORTAL_OTHER_RELEASE=no: the root's own scripts/test must not start yet another root.
    try:
        return run(*in_root(root, f"cd /src && PORTAL_OTHER_RELEASE=no {environment} scripts/test {pytest_args}",
                            network=False), check=False)
    finally:
        # The services it started live in a network namespace that ends with it: stop them now.
        stop_processes_in(root)


def operator_path(root: Path, release: str) -> int:
    """README "Production" on a server the deployment guide built, in the release's root; pytest's status."""
    log(f"README Production on a server built with the deployment guide, on Debian {release}")
    return run_tests_in(root, "PORTAL_GUIDE_SERVER=yes", "tests/test_operator_path.py")


def main(argv: list[str]) -> int:
    """The mail_server tests on the other release, then the operator path on both; non-zero if any failed."""
    if os.geteuid() != 0:
        raise SystemExit("other-release: run as root")
    os.environ.setdefault("DEBIAN_FRONTEND", "noninteractive")
    here = this_release()
    release = OTHER.get(here)
    if release is None:
        raise SystemExit(f"other-release: runs on Debian 12 or 13, not {here}")
    root = bootstrapped_root(release)
    pytest_args = shlex.join(argv) if argv else "-m mail_server"
    log(f"running the tests that touch Dovecot or Postfix on Debian {release}: pytest {pytest_args}")
    failed = {release: run_tests_in(root, "", pytest_args)}
    failed[f"{release} operator path"] = operator_path(root, release)
    failed[f"{here} operator path"] = operator_path(bootstrapped_root(here), here)
    for what, status in failed.items():
        log(f"{what}: {'passed' if status == 0 else f'FAILED ({status})'}")
    return 0 if not any(failed.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
