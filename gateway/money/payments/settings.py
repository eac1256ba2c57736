"""The ``[payments.wechat]`` and ``[payments.alipay]`` config sections, and reading their key
files. Keys live in files named by path (readable by the gateway only); their contents never
appear in a config dump, an error message or a log line."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from parkguard.configfile import StrictModel
from parkguard.errors import ConfigError

HttpsUrl = str
_URL = r"^https?://[\x21-\x7e]{1,300}$"


class WeChatPaySettings(StrictModel):
    """A WeChat Pay direct merchant (直连商户): API v3 for QR orders, notices and refunds,
    v2 micropay for 付款码."""

    mchid: str = Field(pattern=r"^[0-9]{6,20}$", description="merchant number (商户号)")
    appid: str = Field(pattern=r"^[A-Za-z0-9_]{4,32}$",
                       description="the app id bound to the merchant (公众号/应用 AppID)")
    merchant_serial: str = Field(pattern=r"^[0-9A-Fa-f]{8,64}$",
                                 description="serial number of the merchant API certificate")
    merchant_key_file: Path = Field(description="PEM private key of the merchant API "
                                                "certificate (apiclient_key.pem)")
    apiv3_key_file: Path = Field(description="file holding the 32-character APIv3 key that "
                                             "decrypts notices (AES-256-GCM)")
    platform_public_key_file: Path = Field(description="PEM WeChat Pay platform public key "
                                                       "(微信支付公钥) that signs notices and "
                                                       "answers")
    platform_public_key_id: str = Field(pattern=r"^[A-Za-z0-9_]{4,64}$",
                                        description="its id (PUB_KEY_ID_...), sent as "
                                                    "Wechatpay-Serial")
    notify_url: HttpsUrl = Field(pattern=_URL,
                                 description="where WeChat Pay posts notices: "
                                             "{public_url}/api/payments/callback")
    apiv2_key_file: Path | None = Field(
        default=None, description="file holding the 32-character API v2 key (HMAC-SHA256) for "
                                  "付款码 by micropay; absent: codes are declined `no_micropay`")
    client_cert_file: Path | None = Field(
        default=None, description="PEM merchant certificate (apiclient_cert.pem) for the v2 "
                                  "reverse call's mutual TLS, with merchant_key_file")
    terminal_ip: str = Field(default="127.0.0.1", pattern=r"^[0-9a-fA-F.:]{2,45}$",
                             description="the till's IP sent with micropay (spbill_create_ip)")
    api_base: HttpsUrl = Field(default="https://api.mch.weixin.qq.com", pattern=_URL,
                               description="API host (tests point it at a local server)")
    timeout_s: float = Field(default=10.0, gt=0, le=60, description="per HTTP call")
    code_wait_s: float = Field(default=30.0, ge=0, le=120,
                               description="how long a 付款码 may wait for the payer "
                                           "(USERPAYING) before the order is reversed")
    code_poll_s: float = Field(default=5.0, gt=0, le=30,
                               description="seconds between order queries while waiting")


class AlipaySettings(StrictModel):
    """An Alipay open-platform app (RSA2 keys): precreate QR, trade.pay for 付款码."""

    app_id: str = Field(pattern=r"^[0-9]{8,32}$", description="open-platform app id")
    app_private_key_file: Path = Field(description="PEM RSA private key the app signs with")
    alipay_public_key_file: Path = Field(description="PEM Alipay public key (支付宝公钥) that "
                                                     "signs answers and notices")
    notify_url: HttpsUrl = Field(pattern=_URL,
                                 description="where Alipay posts notices: "
                                             "{public_url}/api/payments/callback")
    seller_id: str | None = Field(default=None, pattern=r"^2088[0-9]{12}$",
                                  description="the merchant's PID (2088...): a notice for "
                                              "another seller is refused")
    api_base: HttpsUrl = Field(default="https://openapi.alipay.com/gateway.do", pattern=_URL,
                               description="gateway URL (tests point it at a local server)")
    timeout_s: float = Field(default=10.0, gt=0, le=60, description="per HTTP call")
    code_wait_s: float = Field(default=30.0, ge=0, le=120,
                               description="how long a 付款码 may wait for the payer "
                                           "(WAIT_BUYER_PAY) before the trade is cancelled")
    code_poll_s: float = Field(default=5.0, gt=0, le=30,
                               description="seconds between trade queries while waiting")


def read_key_file(path: Path, what: str) -> str:
    """A key file's text, or a :class:`ConfigError` naming the file and what it is for
    (never its contents)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as error:
        raise ConfigError(f"payments: {what} file {path} not found") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"payments: cannot read {what} file {path}: "
                          f"{type(error).__name__}") from None
    if not text:
        raise ConfigError(f"payments: {what} file {path} is empty")
    return text


def read_symmetric_key(path: Path, what: str) -> str:
    """A 32-character ASCII key (WeChat's APIv3 and API v2 keys), checked for shape."""
    text = read_key_file(path, what)
    if len(text) != 32 or not text.isascii() or not text.isprintable():
        raise ConfigError(f"payments: {what} in {path} must be 32 ASCII characters "
                          f"(it has {len(text)})")
    return text
