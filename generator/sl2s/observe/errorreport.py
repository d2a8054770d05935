"""`sl2s errors …` and `sl2s deploys …`: read the incidents into the error store, change states,
record deploys, and render what there is (the rendering functions are pure)."""

from __future__ import annotations

import os
from pathlib import Path

from sl2s.diagnostics import Sl2sError
from sl2s.observe import errors as er
from sl2s.observe.deploys import Deploy
from sl2s.observe.errorstore import ErrorStore, new_since, since_time


def default_log_dir(log_dir: str | None) -> str:
    return (
        log_dir
        or os.environ.get("SL2S_LOG_DIR")
        or os.path.join("services", ".sl2s", "logs")
    )


def services_log_dir(services_dir: str | os.PathLike) -> Path:
    """The log dir of a generated tree, by the runtime's rule."""
    configured = os.environ.get("SL2S_LOG_DIR")
    return Path(configured) if configured else Path(services_dir) / ".sl2s" / "logs"


def open_store(log_dir: str, *, sync: bool = True) -> ErrorStore:
    if not Path(log_dir).is_dir():
        raise Sl2sError(f"{log_dir}: no such log directory")
    store = ErrorStore(log_dir)
    if sync:
        store.sync(log_dir)
    return store


# ------------------------------------------------------------------------------------ rendering


def _facet(group: er.Group, kind: str) -> str:
    values = group.facets.get(kind) or {}
    return ", ".join(f"{v} ({n})" if len(values) > 1 else v for v, n in values.items())


def render_list(groups: list[er.Group], store: ErrorStore | None = None) -> str:
    if not groups:
        return "no error groups\n"
    out = []
    for g in groups:
        suspect = store.suspected_deploy(g) if store is not None else None
        out.append(
            f"{g.fingerprint}  {g.shown_state:<12} {g.count}x  {g.exception_type}: {g.message}"
        )
        out.append(
            f"    {g.flow}/{g.step} at {g.raised_at or '?'}  first {g.first_seen}  last "
            f"{g.last_seen}  on {_facet(g, 'machine') or '?'}"
            + (f"  hosts {_facet(g, 'host')}" if g.facets.get("host") else "")
        )
        if suspect is not None:
            out.append(f"    suspected: {suspect.short()}")
    return "\n".join(out) + "\n"


def render_show(group: er.Group, suspect: Deploy | None) -> str:
    out = [
        f"{group.fingerprint}  {group.exception_type}: {group.message}",
        f"  state         {group.shown_state}"
        + (f" (since {group.state_at})" if group.state_at else ""),
        f"  where         {group.flow}/{group.step} at {group.raised_at or '?'}",
        f"  count         {group.count}",
        f"  first seen    {group.first_seen}"
        + (f" in {group.first_revision}" if group.first_revision else ""),
        f"  last seen     {group.last_seen}",
    ]
    if group.reactivated_at:
        out.append(
            f"  reactivated   {group.reactivated_at} ({group.reactivations} time(s))"
        )
    if group.state == "resolved" and group.revisions_before:
        out.append(f"  seen before   {', '.join(group.revisions_before)}")
    out.append(
        f"  suspected     {suspect.short() if suspect else 'no deploy recorded before it'}"
    )
    for kind in er.FACETS:
        values = group.facets.get(kind) or {}
        if values:
            label = {
                "machine": "machines",
                "host": "hosts",
                "revision": "revisions",
                "environment": "environments",
            }[kind]
            out.append(
                f"  {label:<13} " + ", ".join(f"{v} ({n})" for v, n in values.items())
            )
    if group.correlation_id:
        out.append(f"  last run      correlation id {group.correlation_id}")
    if group.example_incident:
        out.append(f"  incident      {group.example_incident}")
    if group.frames:
        out.append("  frames")
        out.extend(f"    {frame}" for frame in group.frames)
    return "\n".join(out) + "\n"


def render_deploys(deploys: list[Deploy]) -> str:
    if not deploys:
        return "no deploys recorded\n"
    return "".join(
        f"#{d.id}  {d.at}  {d.revision}  {d.target or '-'}  {d.environment or '-'}  ({d.how})\n"
        for d in deploys
    )


# ------------------------------------------------------------------------------------ commands


def list_errors(
    log_dir: str | None, since: str | None, state: str | None
) -> tuple[str, bool]:
    """(report, whether anything is listed as new since `since`)."""
    directory = default_log_dir(log_dir)
    with open_store(directory) as store:
        groups = store.groups()
        if state:
            if state not in (*er.STATES, "reactivated"):
                raise Sl2sError(
                    f"--state {state!r}: one of {', '.join((*er.STATES, 'reactivated'))}"
                )
            groups = [g for g in groups if state in (g.state, g.shown_state)]
        if since:
            groups = new_since(groups, since_time(store, since))
        return render_list(groups, store), bool(since and groups)


def show_error(log_dir: str | None, fingerprint: str) -> str:
    with open_store(default_log_dir(log_dir)) as store:
        group = store.find(fingerprint)
        return render_show(group, store.suspected_deploy(group))


def set_error_state(
    log_dir: str | None, fingerprint: str, state: str, revision: str | None = None
) -> str:
    with open_store(default_log_dir(log_dir)) as store:
        group = store.set_state(fingerprint, state, revision=revision)
        return f"{group.fingerprint}  {group.shown_state}  {group.exception_type}: {group.message}\n"


def record_deploy(
    services_dir: str | None,
    *,
    revision: str | None,
    target: str = "",
    environment: str = "",
    how: str = "sl2s deploys record",
    log_dir: str | None = None,
) -> tuple[Deploy | None, str]:
    """Record a deploy in the error store and write `<services>/sl2s.revision` (so a copy of the
    tree without `.git` knows its revision). The revision: given, else `revision_of` the tree.
    (None, a warning) when no revision is known: nothing is recorded then."""
    from sl2s.observe.revision import revision_of, write_revision_file

    origin = "given"
    if not revision and services_dir:
        revision, origin = revision_of(services_dir)
    if not revision:
        return None, (
            "no revision known (no SL2S_REVISION, no .git, no sl2s.revision): the deploy is "
            "not recorded; pass --revision or set SL2S_REVISION"
        )
    if services_dir is not None and not Path(services_dir).is_dir():
        raise Sl2sError(f"{services_dir}: no such directory")
    environment = environment or os.environ.get("SL2S_ENVIRONMENT") or ""
    directory = (
        log_dir
        or (str(services_log_dir(services_dir)) if services_dir else None)
        or default_log_dir(None)
    )
    with ErrorStore(directory) as store:
        deploy = store.add_deploy(
            revision, target=target, environment=environment, how=how
        )
    if services_dir:
        write_revision_file(services_dir, revision, deploy.at, origin)
    return deploy, f"recorded {deploy.short()}"


def list_deploys(log_dir: str | None) -> str:
    directory = default_log_dir(log_dir)
    if not Path(directory).is_dir():
        raise Sl2sError(f"{directory}: no such log directory")
    with ErrorStore(directory) as store:
        return render_deploys(store.deploys())
