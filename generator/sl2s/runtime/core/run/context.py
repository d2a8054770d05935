"""The context of an activation and its masked mirror (the secrets concern of `Run`).

`fields` is the context: field name -> JSON data, secrets included. `_masked` mirrors it as step
events show it: secret fields `***`, and every token occurrence of a secret value anywhere inside
another field replaced by `***` (the rule: sl2s.runtime.redact).
"""

from __future__ import annotations

from sl2s.runtime import redact

MASK = redact.MASK


class RunContext:
    """A run's context, the names of its secret fields, who set each field, and the masked mirror."""

    __slots__ = ("fields", "secret_names", "set_by", "_masker", "_masked")

    def __init__(self, fields: dict, secret_names: set[str]) -> None:
        self.fields = fields  # the context: field name -> JSON data (secrets included)
        self.secret_names = secret_names
        # field -> step id that set it (None: the entry; "@machine": came back from a hop)
        self.set_by: dict[str, str | None] = {}
        self._masker: redact.Masker | None = None  # None: no secret value in the run
        self._masked: dict = {}
        self._remask()

    def _remask(self) -> None:
        ctx, names = self.fields, self.secret_names
        # (a value once secret in this activation stays masked after its field changed)
        previous = self._masker
        masker = redact.masker_for(ctx, names, previous) if names else redact.EMPTY
        if masker:
            self._masker = masker
            self._masked = masker.fields(ctx, names)
        else:
            self._masker = None
            self._masked = {k: (MASK if k in names else v) for k, v in ctx.items()}

    def _scrub(self, text: str) -> str:
        masker = self._masker
        return text if masker is None else masker.text(text)

    def _masked_fields(self) -> dict:
        """The context as every event but a step's shows it (masked whole: not on the hot path)."""
        if self._masker is None:
            return self._masked.copy()
        return self._masker.fields(self.fields, self.secret_names)

    def _mask_data(self) -> None:
        """Mask the mirror's values from the context (again): secret fields stay `***`."""
        masker, names, masked = self._masker, self.secret_names, self._masked
        assert masker is not None  # (called when the mirror may hold a secret)
        for key, value in self.fields.items():
            if key not in names:
                masked[key] = masker.value(value)
