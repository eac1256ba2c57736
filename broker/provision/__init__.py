"""Provision a site's bus: inventory in, locked-down Mosquitto config and device bundles out.

``parkguard broker init --site FILE --out DIR`` is :func:`provision_site` on
:func:`load_inventory`; ``parkguard broker rotate`` is :func:`rotate_secret`. The pieces
(PKI, password hashes, ACLs, broker config, uplink broker and its bridge, bundles, state)
are separate modules so each can be read and tested alone. See docs/broker-provisioning.md.
"""

from __future__ import annotations

from broker.provision.bundle import DeviceBundle, load_bundle
from broker.provision.conf import BrokerConf, render_mosquitto_conf
from broker.provision.errors import ProvisionError, UnknownSecretError
from broker.provision.generate import (
    BridgeCredentials,
    DeviceCredentials,
    ProvisionResult,
    load_site,
    provision_site,
    rotate_secret,
    rotation_targets,
)
from broker.provision.inventory import SiteInventory, load_inventory

__all__ = [
    "BridgeCredentials",
    "BrokerConf",
    "DeviceBundle",
    "DeviceCredentials",
    "ProvisionError",
    "ProvisionResult",
    "SiteInventory",
    "UnknownSecretError",
    "load_bundle",
    "load_inventory",
    "load_site",
    "provision_site",
    "render_mosquitto_conf",
    "rotate_secret",
    "rotation_targets",
]
