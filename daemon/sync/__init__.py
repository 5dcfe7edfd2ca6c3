"""Sync: publish snapshots of memory to other places and merge theirs, over monitored
transports (a directory, SSH/SFTP, another memoryd over HTTP), behind a guard that never
lets an empty or shrunken snapshot overwrite good memory.

    transport.py  the Transport protocol and `open_transport(target)`
    dir.py ssh.py http.py   one module per transport
    snapshot.py   generations: manifest, parts, checksums, context.md
    guard.py      what may be published or accepted (shrink, checksums, owners: pure)
    exchange.py   export/import of the LanceDB `memories` table (worker side only)
    inbound.py    an inbound snapshot checked whole: sizes, owners; tombstones applied
    merge.py      one publisher's generation pulled: guard, fetch, admission, merge
    state.py      SQLite: target states, pending syncs, refusals
    service.py    push / pull / status, shared by the CLI, the API and the monitor
    monitor.py    the scheduled probe with backoff; resumes pending syncs
    cli.py api.py the `memoryd sync` commands and the /v1/sync routes
"""
