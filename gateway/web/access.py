"""Who may do what: the permission of every role, and the navigation each role sees.

The server checks these on every request (:func:`gateway.web.deps.need`): a page a role
may not see answers 403, and the navigation lists only what the role may open.
"""

from __future__ import annotations

from gateway.web.users import User

STAFF = frozenset({"guard", "supervisor", "manager"})
SENIOR = frozenset({"supervisor", "manager"})
MANAGER = frozenset({"manager"})
MERCHANT = frozenset({"merchant"})
#: Cleaners see their cleaning tasks only; supervisors and managers see everyone's.
CLEANING = frozenset({"cleaner", "supervisor", "manager"})

#: What each role may do, by permission name. The server checks these on every request.
PERMISSIONS: dict[str, frozenset[str]] = {
    "lanes": STAFF, "sessions": STAFF, "open": STAFF, "evidence": STAFF, "report": STAFF,
    "override": SENIOR, "audit": SENIOR, "incidents": SENIOR, "patrols": SENIOR,
    "reports": MANAGER, "admin": MANAGER,
    "merchant": MERCHANT,
    "cleaning": CLEANING,
}

#: The navigation: (permission, path, Chinese, English).
NAV: tuple[tuple[str, str, str, str], ...] = (
    ("lanes", "/lanes", "车道监控", "Lanes"),
    ("lanes", "/alerts", "告警", "Alerts"),
    ("report", "/incidents/report", "事故上报", "Report"),
    ("lanes", "/handover", "交接班", "Handover"),
    ("lanes", "/plans", "预案", "Plans"),
    ("lanes", "/contacts", "车主联系", "Owner contacts"),
    ("sessions", "/sessions", "车辆记录", "Sessions"),
    ("audit", "/audit", "审计日志", "Audit log"),
    ("incidents", "/incidents", "事件", "Incidents"),
    ("patrols", "/patrols", "巡查", "Patrols"),
    ("cleaning", "/cleaning", "保洁", "Cleaning"),
    ("reports", "/reports", "报表", "Reports"),
    ("admin", "/admin/merchants", "商户管理", "Merchants"),
    ("admin", "/admin/passes", "月卡与名单", "Passes & lists"),
    ("admin", "/admin/refunds", "退款", "Refunds"),
    ("merchant", "/merchant", "我的商户", "My account"),
)


class LoginRequired(Exception):
    """No (valid) session: pages redirect to the login form, the API answers 401."""


class Forbidden(Exception):
    """The role may not do this: 403, for pages and API alike."""


def may(user: User | None, permission: str) -> bool:
    return user is not None and user.role in PERMISSIONS[permission]


def nav(user: User | None) -> list[tuple[str, str, str]]:
    """The navigation links (path, Chinese, English) this user may open."""
    return [(path, zh, en) for perm, path, zh, en in NAV if may(user, perm)]


def home(user: User) -> str:
    """Where a user lands after logging in."""
    if user.role == "cleaner":
        return "/cleaning"
    return "/merchant" if user.role == "merchant" else "/lanes"
