"""Training processes die with the process that launched them (Linux ``PR_SET_PDEATHSIG``).

torchrun starts each worker in a session of its own (``start_new_session=True``), so neither a
signal to the launcher's process group nor the launcher's death reaches the workers: killed
with its launcher, a worker lived on for seconds and could finish a checkpoint save, and a
rerun then logged the resumed steps twice (issue 26). Two links close the chain: the launcher
starts torchrun with :func:`parent_death_signal` as ``preexec_fn`` (torchrun dies with the
launcher), and each worker calls :func:`die_with_parent` first thing (a worker dies with
torchrun). The kernel delivers the signal, so it works whatever killed the parent (SIGKILL
included). Elsewhere than Linux both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
"""From <linux/prctl.h>."""


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return libc.prctl


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send this process ``sig`` when its parent exits; True if set.

    If the parent is already gone (it died before this call), the signal is sent now."""
    prctl = _prctl()
    if prctl is None:
        return False
    parent = os.getppid()
    if prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # re-parented before the request took effect
        os.kill(os.getpid(), sig)
    return True


def parent_death_signal(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets ``sig`` when this process exits.

    libc's ``prctl`` is looked up here, in the parent, so the function run between fork and exec
    only makes the system call (no import, no lock)."""
    prctl = _prctl()
    if prctl is None:
        return None
    sig = int(sig)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec
