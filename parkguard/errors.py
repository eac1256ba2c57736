"""One family tree of errors, so callers can catch a whole area or one precise leaf."""


class ParkGuardError(Exception):
    """Root of every error ParkGuard raises on purpose."""


class ConfigError(ParkGuardError, ValueError):
    """A configuration file or value is invalid; the message names the field and the reason."""


class ContractError(ParkGuardError, ValueError):
    """A message or topic does not follow the wire contract."""


class TariffError(ParkGuardError, ValueError):
    """A tariff is invalid or cannot price the stay it was given."""


class AuditError(ParkGuardError):
    """The audit log could not be written or read."""


class BrokerError(ParkGuardError, RuntimeError):
    """The MQTT broker could not be started, reached or stopped."""
