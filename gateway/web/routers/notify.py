"""The payment provider's notices (no login: the provider's signature is the credential).

The raw body and headers go to the configured provider's own check (WeChat Pay v3:
``Wechatpay-*`` headers, RSA over timestamp, nonce and body, then AES-GCM; Alipay: RSA2 over
the sorted form; simulated: HMAC) before anything in them is believed, and the answer is
the one that provider expects (:meth:`PaymentProvider.callback_reply`). A refusal tells
the provider only a one-word cause; the detail goes to the log.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gateway.money.payments import (
    AmountMismatchError,
    BadSignatureError,
    IgnoredNoticeError,
    PaymentError,
    ReplayedNoticeError,
    StaleNoticeError,
    UnknownOrderError,
)
from gateway.web.deps import CashierDep, DesksDep
from gateway.web.security import client_of

log = logging.getLogger(__name__)
router = APIRouter()

MAX_NOTICE_BYTES = 64 * 1024
"""A provider's notice is a few kilobytes; anything larger is refused unread."""


def _cause(error: PaymentError) -> str:
    """The one word a refused notice's sender is told."""
    for kind, word in ((StaleNoticeError, "stale"), (ReplayedNoticeError, "replayed"),
                       (BadSignatureError, "bad_signature"),
                       (UnknownOrderError, "unknown_order"),
                       (AmountMismatchError, "amount_mismatch")):
        if isinstance(error, kind):
            return word
    return "refused"


@router.post("/api/payments/callback")
async def payment_notice(request: Request, cashier: CashierDep, desks: DesksDep) -> Response:
    provider = desks.provider
    body = await request.body()
    if len(body) > MAX_NOTICE_BYTES:
        reply = provider.callback_reply(False, "too_large")
        return Response(reply.body, status_code=413, media_type=reply.media_type)
    headers = dict(request.headers)  # names arrive lower-case
    try:
        payment = await run_in_threadpool(cashier.payment_callback, body, headers)
    except IgnoredNoticeError as ignored:
        log.info("web: provider notice acknowledged, nothing to book: %s", ignored)
        reply = provider.callback_reply(True)
    except PaymentError as error:
        log.warning("web: payment notice from %s refused: %s", client_of(request), error)
        reply = provider.callback_reply(False, _cause(error))
    else:
        log.info("web: payment notice booked payment %s", payment.payment_id)
        reply = provider.callback_reply(True)
    return Response(reply.body, status_code=reply.status, media_type=reply.media_type)
