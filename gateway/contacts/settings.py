"""``[contacts]`` of the gateway config, the consent wording drivers agree to, and the
"your car needs attention" texts."""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal, TypeAlias

from pydantic import Field, SecretStr, field_validator

from parkguard.configfile import StrictModel

CONSENT_WORDING: Final[dict[str, str]] = {
    "v1": "我同意停车场在我的车辆需要处理时（漏油漏水、车窗未关、车灯未关、车辆受损、"
          "水浸或火警需挪车）通过短信联系我；车辆离场后按规定期限删除，我可随时要求删除。"
          " I agree that the car park may text me when my car needs attention (leaking, "
          "window open, lights on, damage, or moving it in a flood or fire); the number is "
          "deleted after the set period once my car has left, or at any time I ask.",
    "k1": "验证码后加1：同意车辆需处理时短信通知我，离场后按期删除 / A 1 after the code: text "
          "me when my car needs attention; deleted after the set time once I leave",
}
"""Every wording a driver may have agreed to, by version: a consent records the version,
so a changed text is a new version and old consents still say what was agreed."""

CURRENT_WORDING: Final = "v1"

Concern: TypeAlias = Literal["leaking", "window_open", "lights_on", "damage", "accident"]
CONCERNS: Final[dict[str, tuple[str, str]]] = {
    "leaking": ("您的车辆疑似漏油或漏水", "your car seems to be leaking"),
    "window_open": ("您的车辆车窗未关", "a window of your car is open"),
    "lights_on": ("您的车辆车灯未关", "the lights of your car are on"),
    "damage": ("您的车辆有损伤，请到场查看", "your car is damaged, please come and see"),
    "accident": ("您的车辆在停车场内涉及一起事故", "your car was in an accident in the car park"),
}
"""Each concern's words in the text (Chinese, English). Nothing about anyone else goes in:
an accident's text names the owner's own plate only, never the other car, driver or number
(the consent wording's 车辆受损 / damage covers it)."""

INCIDENT_CONCERNS: Final = frozenset({"accident"})
"""Concerns sent only from an incident (``tell_owner(..., incident_id=...)``), never from the
plain form on ``/contacts``."""


class ContactSettings(StrictModel):
    """``[contacts]``: the owner contact register (docs/contacts.md)."""

    key_file: Path = Field(
        default=Path("var/contacts.key"),
        description="the secret the phone numbers are encrypted under (32 random bytes, made "
                    "0600 if missing); losing it loses every stored number")
    retention_days: int = Field(
        default=30, ge=1, le=180,
        description="a number is deleted this many days after its car last left")
    sms_url: SecretStr | None = Field(
        default=None,
        description="Apprise URL with {phone} for texts to owners; absent: [otp] sms_url")
    signature: str = Field(default="停车场", min_length=1, max_length=16,
                           pattern=r"^[^\x00-\x1f<>{}]*$",
                           description="the 【signature】 mainland SMS needs first")

    @field_validator("sms_url")
    @classmethod
    def _has_phone(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and "{phone}" not in value.get_secret_value():
            raise ValueError("sms_url must contain {phone}, where the number goes")
        return value


def concern_text(signature: str, concern: str, plate: str, note: str = "") -> str:
    zh, en = CONCERNS[concern]
    extra = f" {note}" if note else ""
    return (f"【{signature}】{zh}（{plate}），请尽快到停车场处理。{extra} "
            f"Car park: {en} ({plate}), please come soon.")
