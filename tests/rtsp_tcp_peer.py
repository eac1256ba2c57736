"""An IP camera's RTSP server for the lane camera's tests: GStreamer's RTSP server serving an
H.264 clip (MP4), run by the SYSTEM Python (Debian's python3-gi and GStreamer bindings, which the
project venv does not have), not imported by the tests.

Why GStreamer: the other peer (ffmpeg through Debian's RTSP::Server, test_lane_rtsp_camera.py)
has no RTP-over-TCP mode, and a camera's default is RTP interleaved in the RTSP TCP
connection. Here the lower transports the server offers are a flag, so a TCP-only server
proves a stream the lane read went over TCP (a UDP ``SETUP`` gets ``461 Unsupported
transport``). The login is checked as a camera does it (HTTP Digest by default, Basic with
``--basic``), so the lane's escaping of the password in the URL meets a real server.

    /usr/bin/python3 tests/rtsp_tcp_peer.py --check
    /usr/bin/python3 tests/rtsp_tcp_peer.py PORT CLIP.mp4 --protocols tcp --user U  (password
    in the PEER_PASSWORD environment variable: never on a command line)

It prints ``listening PORT`` once clients can connect and serves until killed. Every client
gets its own pipeline (a non-shared factory) from the clip's start, paced by the clip's
timestamps, so the clip need only outlast one connection.
"""

from __future__ import annotations

import argparse
import os
import sys

ELEMENTS = ("filesrc", "qtdemux", "h264parse", "rtph264pay")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", nargs="?", type=int)
    parser.add_argument("clip", nargs="?")
    parser.add_argument("--check", action="store_true", help="exit 0 if GStreamer can serve")
    parser.add_argument("--protocols", choices=("tcp", "udp", "all"), default="tcp")
    parser.add_argument("--user")
    parser.add_argument("--basic", action="store_true", help="Basic auth, not Digest")
    args = parser.parse_args()
    try:
        import gi  # type: ignore[import-not-found]  # Debian python3-gi, not in the venv
        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import (  # type: ignore[import-not-found]
            GLib,
            Gst,
            GstRtsp,
            GstRtspServer,
        )
    except (ImportError, ValueError) as error:
        print(f"missing: {error}", file=sys.stderr)
        return 2
    Gst.init(None)
    absent = [name for name in ELEMENTS if Gst.ElementFactory.find(name) is None]
    if absent:
        print(f"missing GStreamer elements: {', '.join(absent)}", file=sys.stderr)
        return 2
    if args.check:
        return 0
    if args.port is None or args.clip is None:
        parser.error("PORT and CLIP are required")

    lower = {"tcp": GstRtsp.RTSPLowerTrans.TCP, "udp": GstRtsp.RTSPLowerTrans.UDP,
             "all": GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP}[args.protocols]
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    clip = args.clip.replace('"', '\\"')
    factory.set_launch(f'( filesrc location="{clip}" ! qtdemux ! h264parse ! '
                       "rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_protocols(lower)
    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        method = GstRtsp.RTSPAuthMethod.BASIC if args.basic else GstRtsp.RTSPAuthMethod.DIGEST
        auth.set_supported_methods(method)
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "lane")
        password = os.environ.get("PEER_PASSWORD", "")
        if args.basic:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, password), token)
        else:
            auth.add_digest(args.user, password, token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("lane", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS,
                                            True)
        permissions.add_permission_for_role(
            "lane", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/lane", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    print(f"listening {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
