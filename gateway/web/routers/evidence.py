"""A read's evidence images for logged-in staff: ``/evidence/{event_id}/{plate|car}.jpg``.

The gateway fetches them from the lane that made the read (:mod:`gateway.lanes.evidence`)
and answers with the JPEG; when the lane is offline, does not answer or has dropped the
image, it answers 404 with ``图像不可用 image unavailable`` and why, and the pages put those
words where the picture would be (static/evidence.js), never a broken image.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gateway.lanes.evidence import EvidenceFetcher
from gateway.web.deps import ReaderDep, need
from gateway.web.users import User

router = APIRouter()
EvidenceUser = Annotated[User, Depends(need("evidence"))]
UNAVAILABLE = "图像不可用 image unavailable"


def fetcher_of(request: Request) -> EvidenceFetcher | None:
    fetcher: EvidenceFetcher | None = getattr(request.app.state, "evidence", None)
    return fetcher


def read_lane(reader: ReaderDep, event_id: str) -> str | None:
    """The lane that made plate read ``event_id`` (None: no such read)."""
    with reader() as db:
        row = db.execute("SELECT lane FROM events WHERE event_id = ? AND type = 'plate_read'",
                         [event_id]).fetchone()
    return None if row is None else str(row[0])


def _unavailable(why: str) -> Response:
    return Response(f"{UNAVAILABLE}: {why}", status_code=404,
                    media_type="text/plain; charset=utf-8",
                    headers={"Cache-Control": "no-store"})


@router.get("/evidence/{event_id}/{image}.jpg")
async def evidence_image(event_id: str, image: str, request: Request, _user: EvidenceUser,
                         reader: ReaderDep) -> Response:
    if image not in ("plate", "car"):
        return _unavailable("没有这种图像 no such image")
    fetcher = fetcher_of(request)
    if fetcher is None:
        return _unavailable("本网关未启用 not on this gateway")
    lane = await run_in_threadpool(read_lane, reader, event_id)
    if lane is None:
        return _unavailable("没有这次识别 no such read")
    fetched = await run_in_threadpool(fetcher.fetch, lane, event_id)
    data = fetched.images.get(image)  # type: ignore[call-overload]
    if data is None:
        return _unavailable(fetched.why or "车道未保存该图像 the lane kept none")
    return Response(data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=86400"})
