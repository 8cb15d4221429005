import json

import pytest

from driver.entrypoints.api import create_app


class Plugin:
    """Posts raw bodies the way Docker does: no Content-Type, Docker's Accept header."""

    def __init__(self, client):
        self.client = client

    def raw(self, path: str, data: bytes | str = b""):
        response = self.client.post(
            path, data=data, headers={"Accept": "application/vnd.docker.plugins.v1.2+json"}
        )
        assert response.request.headers.get("Content-Type") is None
        return response.status_code, json.loads(response.get_data())

    def call(self, method: str, body=None):
        return self.raw(f"/IpamDriver.{method}", b"" if body is None else json.dumps(body))


@pytest.fixture
def plugin(settings, engine):
    app = create_app(settings)
    yield Plugin(app.test_client())
    app.extensions["ipledger"].store.dispose()
