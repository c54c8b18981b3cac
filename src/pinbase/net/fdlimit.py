"""The process's file-descriptor limit, and the connection cap derived from it.

At start the soft limit is raised to the hard limit (an unprivileged process may), so that a
default `ulimit -n` of 1024 does not cap a server whose administrator allowed more. The
connection cap keeps a tenth of the limit (at least `MIN_RESERVE`) for everything else that
holds a descriptor: the database and its files, the listening sockets, the event loop's own, log
files. Connections beyond the cap are refused before `accept` could fail with EMFILE, and the
other listeners and the store keep working.
"""

from __future__ import annotations

import resource

MIN_RESERVE = 64
UNLIMITED = 1 << 20
"""What an unlimited (RLIM_INFINITY) descriptor limit is taken as."""


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one when it is lower; the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return UNLIMITED
    target = UNLIMITED if hard == resource.RLIM_INFINITY else hard
    if soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # some systems cap below the hard limit (macOS: OPEN_MAX)
        return soft
    return target


def derived_capacity(fd_limit: int) -> int:
    """Open connections allowed under an fd limit: the limit minus a tenth of it (at least
    `MIN_RESERVE`), at least one."""
    return max(1, fd_limit - max(MIN_RESERVE, fd_limit // 10))


def connection_capacity(configured: int, fd_limit: int) -> int:
    """The cap to use: `configured` (0: derived from the fd limit), never above the derived
    one, since a cap at or over the fd limit would let a flood starve the process."""
    derived = derived_capacity(fd_limit)
    return derived if configured <= 0 else min(configured, derived)
