"""Which machines of a generated tree are served, and the deploy manifests for them.

`served_machines(directory)` -> (machines that other machines hop to, all machines); a machine whose
user code does not import is an `Sl2sError` naming it. `deploy_manifests(directory, target, ...)`
checks the target, finds the served machines and renders the manifests (sl2s.runtime.http_deploy).
"""

from __future__ import annotations

from pathlib import Path

from sl2s.diagnostics import Sl2sError

TARGETS = ("kubernetes", "compose")


def served_machines(directory: str) -> tuple[list[str], list[str]]:
    """(machines that other machines hop to, all machines) of the tree at `directory`."""
    from sl2s.runtime.http_server import load_machine, machine_names, serves_inbound

    names = machine_names(directory)
    served = []
    for name in names:
        try:
            machine = load_machine(directory, name)
        except Sl2sError:
            raise
        except Exception as error:  # noqa: BLE001 - user code that does not import
            raise Sl2sError(
                f"{directory}: machine '{name}' cannot be imported: "
                f"{type(error).__name__}: {error}"
            ) from None
        if serves_inbound(machine):
            served.append(name)
    return served, names


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise Sl2sError(f"--target {target}: expected kubernetes or compose")


def deploy_manifests(
    directory: str, target: str, *, image: str, port: int
) -> tuple[str, list[str]]:
    """(manifest text, served machines) for `sl2s deploy`; user mistakes raise `Sl2sError`."""
    from sl2s.runtime.http_deploy import DeploySpec, render

    check_target(target)
    served, _ = served_machines(directory)
    if not served:
        raise Sl2sError(f"{directory}: no machine receives hops; nothing to deploy")
    spec = DeploySpec(
        system=Path(directory).resolve().name,
        served=tuple(served),
        image=image,
        port=port,
    )
    return render(spec, target), served
