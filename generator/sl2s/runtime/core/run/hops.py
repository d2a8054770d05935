"""Hops out of an activation: `call` (to a machine that runs its segment and hands control back)
and `return_to` (handing control back up the stack), with what travels on each: the non-secret
context and the secrets the target may have; a secret's value never travels inside another field.
"""

from __future__ import annotations

from sl2s.runtime import redact
from sl2s.runtime.core import durable
from sl2s.runtime.core.hop import HopRequest, select_transport
from sl2s.runtime.core.run.activation import OPEN, RETURNED
from sl2s.runtime.core.run.failures import RunFailures
from sl2s.runtime.errors import RuntimeFailure, WiringError, failure_from_dict


class RunHops(RunFailures):
    """Hopping to other machines."""

    __slots__ = ()

    def _outgoing(
        self, secrets: tuple[str, ...] | list[str], target: str = "?"
    ) -> tuple[dict, dict]:
        """The fields that travel on a hop to `target`: the non-secret context plus the listed
        secrets. A secret that does not travel does not travel inside another field either: in any
        field that holds its value (nested lists and dicts included) the value is replaced by `***`,
        and a WARNING event (`sl2s.secret_withheld`) names the field and the secret, never the
        value. Returns (fields, {name: the masked value sent}).
        """
        names = self.secret_names
        if secrets and not names.issuperset(secrets):
            names.update(secrets)
            self._remask()
        ctx = self.fields
        if not names:
            return dict(ctx), {}
        fields = {k: v for k, v in ctx.items() if k not in names or k in secrets}
        if self._masker is None:
            return fields, {}
        # every value secret in this activation (earlier values too) but those that travel
        travelling = {
            t for n in secrets if n in ctx for t in redact.secret_texts(ctx[n])
        }
        # (no secret travels: the activation's own masker, not a new one of the same texts)
        masker = (
            redact.Masker(self._masker.texts - travelling)
            if travelling
            else self._masker
        )
        if not masker:
            return fields, {}
        replaced = {}
        for key, value in fields.items():
            if key not in names:
                shown = masker.value(value)
                if shown is not value:
                    fields[key] = replaced[key] = shown
        for key in replaced:
            value = ctx[key]
            held = [
                name
                for name in sorted(names)
                if name not in secrets
                and name in ctx
                and redact.Masker(redact.secret_texts(ctx[name])).value(value)
                is not value
            ]
            which = (
                f"secret {', '.join(map(repr, held))}"
                if held
                else "an earlier value of a secret"
            )
            self._emit(
                "sl2s.secret_withheld",
                "WARNING",
                f"field '{key}' holds the value of {which}, which machine '{target}' does "
                "not receive: it travels there as ***",
                {
                    "sl2s.secret.field": key,
                    "sl2s.secret.names": held,
                    "sl2s.hop.target": target,
                },
                plan=self._setter_plan(key),
            )
        return fields, replaced

    def call(
        self,
        target: str,
        *,
        at: str,
        resume_at: str | None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        """Hop to `target`, which runs its segment starting at step `at`; wait until control comes
        back; check it resumes at `resume_at`; merge the fields that came back."""
        if self._state is not OPEN:
            self._check_open("call")
        machine = self.machine
        fields, replaced = self._outgoing(secrets, target)
        self._check_json(fields, target, at)
        request = HopRequest(
            system=machine.system,
            flow=self.flow,
            source=machine.name,
            target=target,
            at=at,
            resume_at=resume_at,
            fields=fields,
            secrets=sorted(self.secret_names),
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            traceparent=f"00-{self.trace_id}-{self.span_id}-01",
            idempotency_key=durable.hop_key(self.correlation_id, self._attempt, at),
            stack=[*self.stack, machine.name],
            meta=(
                {k: self._scrub(v) for k, v in self.meta.items()} if self.meta else None
            ),
            parent=(
                None
                if self.parent is None
                else {"correlation_id": self.parent[0], "step": self.parent[1]}
            ),
        )
        transport = select_transport()
        if self._buf:
            deadline = getattr(transport, "deadline", None) if self._buf.flows else None
            if deadline is not None:
                # the run's record is still to be written: it goes with the run's deadline
                try:
                    until = deadline(request)
                except RuntimeFailure as failure:
                    self._raise(failure)
                durable.set_deadline(self._buf, self.correlation_id, until)
            # a hop is an effect others see: what led to it is committed first, so a segment run
            # again after a crash replays it and re-sends this hop with the same body and key
            try:
                self._commit()
            except WiringError as failure:
                self._raise(failure)
        try:
            response = transport.call(request)
        except RuntimeFailure as failure:
            self._raise(failure)
        if response.causation_id:
            self.causation_id = response.causation_id
        if response.secrets:
            self.secret_names.update(response.secrets)
        if response.error is not None:
            remote = failure_from_dict(response.error)
            remote.reported = True  # the machine that produced it wrote its ERROR event
            self._raise(remote)
        if response.resume_at != resume_at:
            self._raise(
                WiringError(
                    f"machine '{target}' handed control back to '{machine.name}' at step "
                    f"'{response.resume_at}', but the wiring of '{machine.name}' expects "
                    f"'{resume_at}' (machines generated from different plans: regenerate)",
                    (
                        machine.info.plan_location(self.flow, resume_at)
                        if resume_at
                        else None
                    ),
                )
            )
        returned = response.fields
        for (
            name,
            text,
        ) in replaced.items():  # came back as sent: keep our unmasked original
            if returned.get(name) == text:
                del returned[name]
        self.fields.update(returned)
        origin = "@" + target
        for name in returned:
            self.set_by[name] = origin
        self._remask()

    def return_to(
        self, target: str, resume_at: str | None = None, secrets: tuple[str, ...] = ()
    ) -> RunHops:
        """End this activation: control goes back to `target` (a machine waiting up the stack), to
        resume at step `resume_at` (None: the flow is done), with the non-secret context and the
        listed secrets. Returns this run, which the segment function returns."""
        if self._state is not OPEN:
            self._check_open("return_to")
        if target not in self.stack:
            self._raise(
                WiringError(
                    f"machine '{self.machine.name}' returns to '{target}', which is not waiting "
                    f"for it in flow '{self.flow}' (waiting: {', '.join(self.stack) or 'nobody'})"
                )
            )
        self._return = (resume_at, self._outgoing(secrets, target)[0])
        self._state = RETURNED
        return self
