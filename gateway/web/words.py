"""Every machine value the dashboard shows, in Chinese with English beside.

The pages used to print ``closed``, ``normal`` or ``paid_at_exit`` as stored. Here is the
one table the templates (filter ``say``) and the live view's script (``/api/lanes`` sends
the words with the values) take their words from. Its domains are named after the wire
contract's fields (``barrier``, ``mode``, ``settled`` ...), so a test can walk every
``Literal`` of the contract and fail on a value nobody translated
(tests/test_web_translations.py), plus the free-text codes the gateway and the lanes send:
decision reasons and fault codes.

A value with no entry is shown as it is (never an error on a page), marked as a code.
"""

from __future__ import annotations

from typing import Final

Words = dict[str, str]

_BARRIER: Final[Words] = {
    "opening": "正在抬杆 opening", "open": "已抬杆 open", "closing": "正在落杆 closing",
    "closed": "已落杆 closed", "unknown": "未知 unknown",
}

#: domain -> machine value -> "中文 English".
WORDS: Final[dict[str, Words]] = {
    "access": {"visitor": "临时车 visitor", "pass": "月卡/亲情卡 pass",
               "whitelisted": "白名单 whitelisted"},
    "action": {"open": "放行 open", "refuse": "拒绝 refuse", "send": "发送 send",
               "check": "核验 check"},
    "barrier": _BARRIER,
    "position": _BARRIER,
    "command": {"open": "开闸 open", "close": "落杆 close", "hold_open": "保持抬杆 hold open",
                "display": "显示 display", "set_mode": "切换模式 set mode",
                "sync": "同步 sync"},
    "decided_by": {"gateway": "网关 gateway", "lane": "车道自主 lane alone"},
    "direction": {"entry": "入口 entry", "exit": "出口 exit"},
    "kind": {
        "fire": "火警 fire", "flood": "水浸 flood", "fire_panel": "消防主机 fire panel",
        "monthly": "月卡 monthly", "family": "亲情卡 family",
        "rule": "规则优惠 rule", "free_minutes": "免费时长 free minutes",
        "amount_off": "减免金额 amount off", "full_free": "全免 full free",
        "session_opened": "入场 session opened", "session_closed": "离场 session closed",
        "paid": "已付款 paid", "pass_changed": "月卡变更 pass changed",
        "list_changed": "名单变更 list changed", "coupons_changed": "优惠券变更 coupons changed",
    },
    "list_name": {"whitelist": "白名单 whitelist", "blacklist": "黑名单 blacklist",
                  "hold": "出口扣留 held at exit"},
    "loop": {"arming": "前地感 arming loop", "safety": "防砸地感 safety loop"},
    "mode": {"normal": "正常 normal", "free_open": "免费放行 free open", "locked": "锁闸 locked",
             "fire_open": "火警常开 fire open", "maintenance": "维护 maintenance"},
    "outcome": {
        "sent": "已发送 sent", "rate_limited": "过于频繁 rate limited",
        "send_failed": "发送失败 send failed", "unavailable": "不可用 unavailable",
        "confirmed": "已确认 confirmed", "wrong": "验证码错误 wrong code",
        "expired": "已过期 expired", "locked": "已锁定 locked", "no_code": "无验证码 no code",
    },
    "settled": {
        "decision": "按决策放行 by the decision", "paid_online": "线上已付 paid online",
        "payment_code": "付款码 payment code",
        "payment_code_offline": "付款码(脱机) payment code offline",
        "cash": "现金 cash", "waived": "免收 waived", "guard_open": "保安开闸 guard open",
        "free_open": "免费放行 free open", "fire": "火警放行 fire",
    },
    "severity": {"info": "通知 Info", "warning": "警告 Warning", "critical": "紧急 Critical"},
    "state": {"online": "在线 online", "offline": "离线 offline", "raised": "已发出 Raised",
              "notified": "已通知 Notified", "acked": "已确认 Acknowledged",
              "resolved": "已解除 Resolved"},
    "type": {
        "vehicle_detected": "车辆到达 vehicle detected", "plate_read": "车牌识别 plate read",
        "decision": "决策 decision", "barrier": "道闸 barrier", "passed": "已通过 passed",
        "tailgate": "跟车 tailgate", "help_pressed": "求助 help pressed",
        "payment_code": "付款码 payment code", "fault": "故障 fault",
        "fault_cleared": "故障恢复 fault cleared",
    },
    "session_state": {"open": "在场 inside", "closed": "已离场 left"},
    "payment_state": {"pending": "待支付 pending", "paid": "已支付 paid",
                      "refunded": "已退款 refunded", "failed": "失败 failed",
                      "captured": "已扣款 captured", "cancelled": "已取消 cancelled"},
    "method": {"prepay": "预付 prepay", "exit": "出口支付 exit",
               "payment_code": "付款码 payment code", "cash": "现金 cash"},
    "merchant_mode": {"prepaid": "预付 prepaid", "overdraft": "透支 overdraft",
                      "threshold": "满额 threshold", "deduct": "抵扣 deduct"},
    "coupon_state": {"issued": "已发放 issued", "redeemed": "已使用 redeemed",
                     "revoked": "已撤销 revoked", "expired": "已过期 expired"},
    "incident_state": {"open": "处理中 open", "closed": "已结案 closed"},
    "image": {"plate": "车牌图像 plate crop", "car": "车辆图像 car view"},  # evidence
    "images": {"plate": "车牌图像 plate crop", "car": "车辆图像 car view"},
    "contact_source": {"pay_page": "缴费页 pay page", "kiosk": "车道终端 lane kiosk"},
    "drill_state": {"scheduled": "已排期 scheduled", "running": "进行中 running",
                    "over": "已结束 over"},
    "check_via": {"page": "页面 page", "tap": "巡更打卡 patrol tap"},
    "drill_kind": {"scheduled": "计划演习 scheduled", "unscheduled": "突击演习 unscheduled"},
    "audit_action": {
        "alarm.fire_reset": "火警复位 fire reset", "alert.ack": "告警确认 alert acknowledged",
        "contact.consent": "同意联系 contact consent", "contact.reveal": "查看号码 number revealed",
        "contact.delete": "删除联系 contact deleted", "contact.message": "通知车主 owner texted",
        "drill.start": "开始演习 drill started", "drill.schedule": "排期演习 drill scheduled",
        "drill.end": "结束演习 drill ended", "flood.heavy_rain": "暴雨预警 heavy rain declared",
        "flood.check": "防汛检查 readiness item checked",
        "flood.ready": "防汛就绪 flood readiness complete",
        "equipment.fault": "消防器材故障 fire equipment fault",
        "alert.resolve": "告警解除 alert resolved",
        "coupon.claim_batch": "批量领券 coupons claimed",
        "coupon.issue": "发券 coupon issued", "coupon.redeem": "用券 coupon redeemed",
        "coupon.revoke": "撤券 coupon revoked", "debt.record": "记欠费 debt recorded",
        "debt.settle": "补缴欠费 debt settled", "fee.override": "改价 fee override",
        "incident.close": "结案 incident closed",
        "incident.contact_reveal": "查看联系电话 contact revealed",
        "incident.note": "事件备注 incident note", "incident.open": "立案 incident opened",
        "lane.open": "手动开闸 manual open", "lane.close": "远程落杆 remote close",
        "lane.hold_open": "保持抬杆 hold open", "lane.set_mode": "切换模式 set mode",
        "lane.manual_open": "手动开闸 manual open",
        "merchant.open": "商户开户 merchant opened",
        "merchant.settlement": "商户结算 merchant settlement",
        "merchant.terms": "商户条款 merchant terms", "merchant.top_up": "商户充值 merchant top-up",
        "pass.issue": "办理月卡 pass issued", "pass.renew": "月卡续期 pass renewed",
        "pass.revoke": "停用月卡 pass revoked", "pass.set_plates": "月卡换车牌 pass plates set",
        "payment.cash": "现金收费 cash taken", "payment.refund": "退款 refund",
        "tariff.activate": "启用收费标准 tariff activated",
        "whitelist.add": "加入白名单 whitelisted", "whitelist.remove": "移出白名单 unwhitelisted",
        "blacklist.add": "加入黑名单 blacklisted", "blacklist.remove": "移出黑名单 unblacklisted",
        "plate.hold": "出口扣留 plate held", "plate.hold_lift": "解除扣留 hold lifted",
        "handover.start": "交班 handover started", "handover.accept": "接班 handover accepted",
        "incident.callback": "投诉回访 call-back",
        "cleaning.tick": "保洁完成 cleaning ticked",
    },
    "reason": {
        "plate_unread": "未识别车牌 plate unread", "plate_ambiguous": "车牌不清 plate ambiguous",
        "no_entry_record": "无入场记录 no entry record",
        "plate_held": "扣留车辆 请联系保安 plate held: see a guard",
        "fire_free_exit": "火警免费离场 fire: free exit", "fire_open": "火警常开 fire open",
        "free_open": "免费放行 free open", "payment_due": "待缴费 payment due",
        "already_inside": "已在场内 already inside", "visitor_entry": "临时车入场 visitor entry",
        "pass_entry": "月卡入场 pass entry", "whitelisted_entry": "白名单入场 whitelisted entry",
        "pass_in_use": "月卡已有车在场 pass in use", "pass": "月卡 pass",
        "whitelisted": "白名单 whitelisted", "exempt": "免费车辆 exempt",
        "prepaid": "已预付 prepaid", "free": "免费 free", "blacklisted": "黑名单 blacklisted",
        "pass_valid": "月卡有效 pass valid", "pass_revoked": "月卡已停用 pass revoked",
        "pass_not_yet_valid": "月卡未生效 pass not yet valid",
        "pass_expired": "月卡已过期 pass expired", "no_pass": "临时车 no pass",
        "lot_full": "车位已满 lot full", "entry": "入场 entry",
        "no_plate_entry": "无牌车入场 no-plate entry", "no_replica": "无本地数据 no replica",
        "flood_entries_closed": "水浸禁入 flood: entries closed",
        "manual_open": "手动开闸 manual open",
    },
    "fault": {
        "command_rejected": "指令被拒 command rejected",
        "command_unsupported": "指令不支持 command unsupported",
        "fire_hold": "火警保持抬杆 fire hold", "sequence_error": "序号错误 sequence error",
        "replica_gap": "本地数据缺失 replica gap",
        "unexpected_event": "流程异常 unexpected event",
        "barrier_limit_timeout": "道闸限位超时 barrier limit timeout",
        "read_failed": "识别失败 read failed",
        "refused_waiting": "被拒车辆滞留 refused car waiting",
        "vehicle_backed_out": "车辆倒出 vehicle backed out",
        "pass_timeout": "开闸未通过 no vehicle passed",
        "kiosk_device_lost": "自助机设备断开 kiosk device lost",
        "kiosk_device_back": "自助机设备恢复 kiosk device back",
        "camera_offline": "摄像机离线 camera offline",
        "display_failed": "显示屏无应答 display failed",
        "journal_full": "车道存储已满 lane journal full",
    },
}

#: A decision reason the lane made alone starts with this (``offline_lot_full``).
OFFLINE_PREFIX: Final = "offline_"


def lookup(value: str, domain: str) -> str | None:
    """The words for ``value`` in ``domain``, or None if the table has none."""
    words = WORDS.get(domain, {}).get(value)
    if words is None and domain == "reason" and value.startswith(OFFLINE_PREFIX):
        rest = WORDS["reason"].get(value[len(OFFLINE_PREFIX):])
        return None if rest is None else f"脱机·{rest} (offline)"
    return words


def say(value: object, domain: str) -> str:
    """What a page shows for a machine value: its words, or the value itself when the
    table has none (``—`` for nothing)."""
    if value is None or value == "":
        return "—"
    return lookup(str(value), domain) or str(value)


def pairs(domain: str) -> dict[str, tuple[str, str]]:
    """A domain as ``value -> (中文, English)``, for pages that set the two apart."""
    return {value: (text.split(" ", 1)[0], text.split(" ", 1)[1])
            for value, text in WORDS[domain].items()}
