"""The owner contact register: phones of drivers who agreed to be reached about their car.

Kept encrypted (:mod:`~gateway.contacts.vault`), deleted when the car has been gone for the
retention period or when the driver asks, masked on every screen, revealed only to a
supervisor who types a reason (audited). See docs/contacts.md.
"""

from __future__ import annotations

from gateway.contacts.register import ContactError, ContactRegister, ContactView
from gateway.contacts.settings import CONCERNS, CONSENT_WORDING, ContactSettings
from gateway.contacts.vault import PhoneVault, load_or_create_master_key

__all__ = [
    "CONCERNS",
    "CONSENT_WORDING",
    "ContactError",
    "ContactRegister",
    "ContactSettings",
    "ContactView",
    "PhoneVault",
    "load_or_create_master_key",
]
