"""The HTTP API: Organization datastream API, OAuth2 token endpoint, health and docs."""

from pinbase.http.app import create_app

__all__ = ["create_app"]
