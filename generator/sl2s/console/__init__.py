"""`sl2s console`: the events of every machine as a local web application.

Functional core: `index` (JSON lines -> SQLite with FTS5, incrementally), `queries` (runs, one
run, an event's run, streams), `diagram` (a run as a sequence diagram, SVG), `settings` (base URL,
source links). Shell: `app` (Starlette, templates, static files), `remote` (machines over HTTP).
"""
