"""Load a TOML config file into a pydantic model, failing at start with the field and the reason.

Secrets (passwords, keys, tokens in URLs) are :class:`~pydantic.SecretStr` fields: their repr
and dumps show ``**********``, and an error about one names the field and the reason but never
quotes what was given (:func:`explain`), so a config mistake cannot put a key in a log.
"""

from __future__ import annotations

import tomllib
import types
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    ValidationError,
    model_validator,
)

from parkguard.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def hex_key(value: SecretStr, *, min_bytes: int) -> SecretStr:
    """A secret key written as hex, at least ``min_bytes`` long; lower-cased. The reasons
    never quote the key.

    >>> hex_key(SecretStr("AB" * 16), min_bytes=16).get_secret_value()[:4]
    'abab'
    """
    text = value.get_secret_value()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError("must be hexadecimal") from None
    if len(raw) < min_bytes:
        raise ValueError(f"must be at least {min_bytes} bytes ({2 * min_bytes} hex digits), "
                         f"got {len(raw)} bytes")
    return SecretStr(text.lower())


def reveal(secret: SecretStr | None) -> str | None:
    """The text of a secret field, for the one place that uses it (a login, an HMAC)."""
    return None if secret is None else secret.get_secret_value()


#: An HMAC key for signed commands (32 bytes or more, hex).
CommandKeyHex = Annotated[SecretStr, AfterValidator(partial(hex_key, min_bytes=32))]
#: The largest MQTT packet the site broker accepts (Mosquitto ``max_packet_size``): a client
#: sending a bigger one is disconnected. The broker's config and every bus default to it.
MAX_PACKET_SIZE = 256 * 1024
#: A site secret for no-plate identities (16 bytes or more, hex).
SiteKeyHex = Annotated[SecretStr, AfterValidator(partial(hex_key, min_bytes=16))]


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors (a typo must not be silently ignored).
    A :class:`~pydantic.ValidationError`'s own text leaves out the values given (it may be
    chained under a :class:`~parkguard.errors.ConfigError` in a traceback)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


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
    password: SecretStr | None = Field(default=None, min_length=1,
                                       description="device password")
    max_packet_size: int = Field(
        default=MAX_PACKET_SIZE, ge=1024, le=16 * 1024 * 1024,
        description="the broker's max_packet_size in bytes: the bus refuses to send a bigger "
                    "packet (the broker would disconnect it); a bundle's value overrides it")

    @model_validator(mode="after")
    def _login_complete(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: give both or neither")
        return self


def explain(error: ValidationError, *, source: str, model: type[BaseModel] | None = None) -> str:
    """Each problem as ``field: reason``, with the value given when it is no secret.

    A value is shown only when ``model`` says the field holds no secret (nor anything that
    contains one), and never for an unknown key (``hmac_kye = "..."`` is a typo of a
    secret's name as often as not).
    """
    lines = [f"{source}: invalid configuration"]
    for problem in error.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        value = problem.get("input")
        hidden = (isinstance(value, dict) or model is None
                  or problem["type"] == "extra_forbidden"
                  or _secret_at(model, problem["loc"]))
        shown = "" if hidden else f" (got {value!r})"
        lines.append(f"  {where}: {problem['msg']}{shown}")
    return "\n".join(lines)


_SECRET_TYPES = (SecretStr, SecretBytes)


def _members(annotation: Any) -> list[Any]:
    """The types an annotation may hold: ``Annotated`` unwrapped, a union split, None out."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [] if annotation is type(None) else [annotation]


def _holds_secret(annotation: Any, seen: frozenset[Any] = frozenset()) -> bool:
    """Whether a value of this type is, or contains, a secret."""
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, _SECRET_TYPES):
            return True
        if isinstance(member, type) and issubclass(member, BaseModel):
            if member not in seen and any(
                    _holds_secret(f.annotation, seen | {member})
                    for f in member.model_fields.values()):
                return True
        elif any(_holds_secret(arg, seen) for arg in get_args(member)):
            return True
    return False


def _secret_at(model: type[BaseModel], loc: Sequence[int | str]) -> bool:
    """Whether the value at ``loc`` in ``model`` may be a secret; True when unsure."""
    annotation: Any = model
    for part in loc:
        members = _members(annotation)
        if len(members) != 1:  # a union: its errors name a member we do not follow
            return _holds_secret(annotation) or not members
        (member,) = members
        origin = get_origin(member)
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get(str(part))
            if field is None:
                return True
            annotation = field.annotation
        elif origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
            if part == "[key]":
                return False  # the key of a mapping (a lane id) is no secret
            annotation = get_args(member)[1]
        elif origin in (list, tuple, set, frozenset) and get_args(member):
            args = get_args(member)
            fixed = origin is tuple and not (len(args) == 2 and args[1] is Ellipsis)
            annotation = args[int(part)] if fixed and isinstance(part, int) and part < len(
                args) else args[0]
        else:
            return True
    return _holds_secret(annotation)


def parse_config(model: type[M], data: dict[str, Any], *, source: str = "config") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(explain(error, source=source, model=model)) from None


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
