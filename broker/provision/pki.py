"""The site's own certificate authority and the broker's TLS server certificate.

Each site gets its own CA, so a device bundle from one car park is worthless at another, and
the CA's private key never leaves the provisioning state directory (the broker needs only
its own key). ECDSA P-256 keeps handshakes cheap on a Pico W and is what MicroPython's
mbedTLS handles best. Certificates carry the extensions strict verifiers insist on (key
usage, basic constraints, subject and authority key identifiers), so the same files work
with Python 3.13's ``VERIFY_X509_STRICT`` as with paho and Mosquitto.

>>> from datetime import UTC, datetime
>>> now = datetime(2026, 1, 1, tzinfo=UTC)
>>> ca = new_ca("mall-b2", now=now)
>>> server = issue_server_cert(ca, ("gw.mall-b2.lan", "127.0.0.1"), now=now)
>>> sorted(certificate_names(server.cert))
['127.0.0.1', 'gw.mall-b2.lan']
>>> renewal_reason(server, ca, ("gw.mall-b2.lan", "127.0.0.1"), now=now) is None
True
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.provision.errors import ProvisionError
from broker.provision.files import write_public, write_secret

#: The CA outlives the hardware: re-issuing it means re-bundling every device.
CA_VALIDITY = timedelta(days=10 * 365)
#: The server certificate is renewed by ``init`` well before it lapses (see RENEW_BEFORE),
#: and re-issuing it touches no device: they trust the CA, not this certificate.
SERVER_VALIDITY = timedelta(days=825)
#: ``init`` re-issues the server certificate once it has less than this left.
RENEW_BEFORE = timedelta(days=60)
#: Certificates start a little in the past so a device whose clock lags is not refused.
BACKDATE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class KeyAndCert:
    """A private key and the certificate for its public half."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, *, key_path: Path, cert_path: Path) -> None:
        """Key 0600, certificate 0644: the key is the secret, the certificate is public."""
        write_secret(key_path, self.key_pem())
        write_public(cert_path, self.cert_pem())


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def new_ca(site: str, *, now: datetime) -> KeyAndCert:
    """A self-signed CA for one site that may sign end-entity certificates only."""
    key = _new_key()
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ParkGuard"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"ParkGuard site CA {site}"),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return KeyAndCert(key, cert)


def issue_server_cert(ca: KeyAndCert, names: tuple[str, ...], *, now: datetime) -> KeyAndCert:
    """A TLS server certificate for the broker, valid for every host name and IP in ``names``.

    Clients check the name they dialled against the subject alternative names (the common
    name is ignored by modern verifiers), so every address a device may use must be listed.
    """
    if not names:
        raise ProvisionError("the broker certificate needs at least one host name or address")
    key = _new_key()
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ParkGuard"),
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
        ]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVER_VALIDITY, ca.cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return KeyAndCert(key, cert)


def certificate_names(cert: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return {*dns, *ips}


def renewal_reason(
    server: KeyAndCert, ca: KeyAndCert, names: tuple[str, ...], *, now: datetime
) -> str | None:
    """Why the server certificate must be re-issued, or ``None`` if it is still right.

    ``init`` calls this on every run so that changing the broker's address in the inventory,
    rotating the CA, or simply time passing re-issues the certificate without anyone having
    to remember to.
    """
    if server.cert.issuer != ca.cert.subject:
        return "it was issued by another CA"
    try:
        server.cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return "the site CA's signature on it does not verify"
    if server.cert.public_key() != server.key.public_key():
        return "it does not belong to the broker's private key"
    missing = set(names) - certificate_names(server.cert)
    if missing:
        return f"it does not name {', '.join(sorted(missing))}"
    if server.cert.not_valid_after_utc - now < RENEW_BEFORE:
        return f"it expires on {server.cert.not_valid_after_utc:%Y-%m-%d}"
    return None


def load(key_path: Path, cert_path: Path) -> KeyAndCert:
    """Read a PEM key and certificate written by :meth:`KeyAndCert.write`."""
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as error:
        raise ProvisionError(f"cannot read {key_path} / {cert_path}: {error}") from error
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ProvisionError(f"{key_path}: expected an EC private key, got {type(key).__name__}")
    return KeyAndCert(key, cert)
