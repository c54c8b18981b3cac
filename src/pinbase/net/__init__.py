"""Connection-level defences every listener shares: who may connect (a process-wide cap below
the fd limit, a per-address cap), the rate-limited log of connections refused or cut off, and
the process's fd limit.

This layer sits between `app` and the faces (`http`, `devices`): it knows sockets and peers,
not requests, devices or tokens.
"""
