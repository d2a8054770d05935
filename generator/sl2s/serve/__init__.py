"""Running and deploying a generated system's machines over HTTP: what `sl2s up` and `sl2s deploy`
do, as functions the CLI (sl2s.cli.serve) delegates to.

- `machines`: which machines of a tree are served (other machines hop to them); deploy manifests.
- `up`: `sl2s up` — one process per served machine on a 127.0.0.1 port bound here, the address map
  and session key files, signal handling, stopping everything.

Not imported by sl2s.runtime (which generated code imports): process management stays out of it.
The HTTP protocol, server and client are in sl2s.runtime.transport.http.
"""
