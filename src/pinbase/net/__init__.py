"""Connection-level defences every listener shares: who may connect (a process-wide cap below
the fd limit, a per-address cap), the rate-limited log of connections refused or cut off, the
process's fd limit, and the way into the device listeners (admission, then TLS: `entry`).

This layer sits between `app` and the faces (`http`, `devices`): it knows sockets and peers,
not requests, devices or tokens.
"""
