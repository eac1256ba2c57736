"""Load a TOML config file into a pydantic model, failing at start with the field and the reason."""

from __future__ import annotations

import tomllib
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from parkguard.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def hex_key(value: str, *, min_bytes: int) -> str:
    """A secret key written as hex, at least ``min_bytes`` long; lower-cased.

    >>> hex_key("AB" * 16, min_bytes=16)[:4]
    'abab'
    """
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError("must be hexadecimal") from None
    if len(raw) < min_bytes:
        raise ValueError(f"must be at least {min_bytes} bytes ({2 * min_bytes} hex digits), "
                         f"got {len(raw)} bytes")
    return value.lower()


#: An HMAC key for signed commands (32 bytes or more, hex).
CommandKeyHex = Annotated[str, AfterValidator(partial(hex_key, min_bytes=32))]
#: A site secret for no-plate identities (16 bytes or more, hex).
SiteKeyHex = Annotated[str, AfterValidator(partial(hex_key, min_bytes=16))]


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class BrokerSettings(StrictModel):
    """Where the site's Mosquitto listens and how this device logs in.

    Either point ``bundle`` at the ``device.toml`` that ``parkguard broker init``
    made for this device (the usual way), or give the fields one by one.
    """

    bundle: Path | None = Field(
        default=None, description="device.toml from `parkguard broker init`; overrides the rest"
    )
    host: str = Field(default="127.0.0.1", min_length=1, description="broker host name or address")
    port: int = Field(default=8883, ge=1, le=65535, description="broker TCP port")
    ca_file: Path | None = Field(default=None, description="site CA certificate: TLS when set")
    username: str | None = Field(default=None, min_length=1, description="device user name")
    password: str | None = Field(default=None, min_length=1, repr=False,
                                 description="device password")

    @model_validator(mode="after")
    def _login_complete(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: give both or neither")
        return self


def explain(error: ValidationError, *, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for problem in error.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        value = problem.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {where}: {problem['msg']}{shown}")
    return "\n".join(lines)


def parse_config(model: type[M], data: dict[str, Any], *, source: str = "config") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(explain(error, source=source)) from error


def load_config(model: type[M], path: Path) -> M:
    """Read ``path`` as TOML and validate it; every error names the file, the field and why."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: config file not found") from error
    except UnicodeDecodeError as error:
        where = f"{error.reason} at byte {error.start}"
        raise ConfigError(f"{path}: not UTF-8 text ({where})") from error
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    return parse_config(model, data, source=str(path))
