"""``--procs N`` on the command line: start the same command as N MPI processes.

``tensorcalc train RECIPE --procs N`` runs ``mpiexec -n N python -m tensorcalc.cli train
RECIPE ...`` with the ``mpiexec`` installed next to this Python (the MPICH wheel's, from
``pip install 'tensorcalc[mpi]'``), and returns its exit status; under ``mpiexec`` the pipeline
makes the run data-parallel. ``mpiexec -n N tensorcalc train RECIPE`` is the same job started by
hand. Each process uses ``--threads`` BLAS threads (default 1): keep processes × threads at or
below the number of cores, or MPI's polling and BLAS fight over them (docs/distributed.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from .comm import INSTALL_HINT, launched, mpi_available

__all__ = ["relaunch", "LaunchError", "mpiexec_path"]

COMMANDS = ("train", "tune")


class LaunchError(ValueError):
    """A --procs request that cannot be met (the CLI prints it and exits with status 2)."""


def _pop_procs(argv: list) -> int | None:
    for i, a in enumerate(argv):
        if a == "--procs" or a.startswith("--procs="):
            if "=" in a:
                value = a.split("=", 1)[1]
                del argv[i]
            elif i + 1 < len(argv):
                value = argv[i + 1]
                del argv[i:i + 2]
            else:
                raise LaunchError("--procs needs a number of processes")
            if not value.isdigit() or int(value) < 1:
                raise LaunchError(f"--procs must be a positive integer, got {value!r}")
            return int(value)
    return None


def mpiexec_path() -> str | None:
    """The mpiexec beside this Python (the venv's), else the one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else shutil.which("mpiexec")


def relaunch(argv: list) -> int | None:
    """Handle ``--procs`` in ``argv`` (removed from it). Returns the exit status of the MPI job
    it ran, or None when this process should go on (no --procs, --procs 1, or already a rank of
    a job — then ranks other than 0 print nothing on stdout)."""
    procs = _pop_procs(argv)
    if launched() > 1:
        if procs not in (None, launched()):
            raise LaunchError(f"--procs {procs} inside an MPI job of {launched()} processes; "
                              "give the number of processes to mpiexec only")
        from .comm import world

        if world().rank > 0:  # one copy of the results on the terminal: rank 0's
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the process's lifetime)
        return None
    if procs is None or procs == 1:
        return None
    if not argv or argv[0] not in COMMANDS:
        raise LaunchError(f"--procs applies to {' and '.join(COMMANDS)}, not "
                          f"{argv[0] if argv else 'no command'!r}")
    exe = mpiexec_path()
    if not mpi_available() or exe is None:
        raise LaunchError(f"--procs {procs}: {INSTALL_HINT}")
    cmd = [exe, "-n", str(procs), sys.executable, "-m", "tensorcalc.cli", *argv]
    try:
        rc = subprocess.call(cmd)
    except KeyboardInterrupt:  # mpiexec forwards Ctrl-C to the ranks; they save and stop
        return 130
    if rc != 0:
        print(f"tensorcalc: the MPI job of {procs} processes failed (exit status {rc}); each "
              "rank's error is printed above", file=sys.stderr)
    return rc
