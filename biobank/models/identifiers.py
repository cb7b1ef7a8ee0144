from __future__ import annotations

from django.db import models


class IdSequence(models.Model):
    """One counter row per identifier prefix; allocation locks and bumps it (never max()+1)."""

    prefix = models.CharField(max_length=4, primary_key=True)
    last_number = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(last_number__gte=0), name="idsequence_last_number_gte_0"
            )
        ]

    def __str__(self) -> str:
        return f"{self.prefix}: {self.last_number}"
