"""Errors of site provisioning, under the project's one family tree."""

from __future__ import annotations

from parkguard.errors import ParkGuardError


class ProvisionError(ParkGuardError, ValueError):
    """A site could not be provisioned: bad state on disk, an unknown device, a missing file."""


class UnknownSecretError(ProvisionError, KeyError):
    """``rotate`` was asked for a device or secret the site does not have."""

    def __str__(self) -> str:
        # KeyError quotes its argument; this message is meant for a person.
        return str(self.args[0]) if self.args else ""
