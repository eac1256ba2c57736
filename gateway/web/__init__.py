"""The control room's web dashboard, its JSON API and the drivers' pay page.

``create_web_app(gateway_app, settings=...)`` builds the ASGI app; ``WebServer`` runs it
with uvicorn in a thread beside the gateway. See docs/dashboard.md.
"""

from gateway.web.access import PERMISSIONS
from gateway.web.app import create_web_app
from gateway.web.server import WebServer
from gateway.web.settings import WebSettings, load_secret_key

__all__ = ["PERMISSIONS", "WebServer", "WebSettings", "create_web_app", "load_secret_key"]
