"""Reading and answering the plugin socket's JSON bodies, for Docker's calls and CNI's alike.

Docker sends no Content-Type, so bodies are parsed as JSON whatever the headers say, and an
empty body is an empty request; a value of the wrong type is refused, naming the field.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request

from driver.domain.cni_spec import MAX_CALL_BODY
from driver.domain.errors import InvalidRequest

# every call's body is bounded: Docker's and CNI's at 64 KiB, but for CNI's GC (see api_cni)
MAX_BODY = MAX_CALL_BODY
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"


def reply(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype=CONTENT_TYPE)


def json_body(*, required: bool) -> dict[str, Any]:
    raw = request.get_data(cache=False)
    if not raw.strip():
        if required:
            raise InvalidRequest("empty request body: expected a JSON object")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise InvalidRequest(f"request body is not valid JSON: {str(e)[:120]}") from None
    if body is None and not required:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, not {type(body).__name__}")
    return body


def text_field(body: dict[str, Any], key: str, *, required: bool = False, limit: int = 255) -> str:
    if key not in body or body[key] is None:
        if required:
            raise InvalidRequest(f"missing {key} in request body")
        return ""
    value = body[key]
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string, not {_show(value)}")
    if required and not value:
        raise InvalidRequest(f"{key} must not be empty")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate: JSON's "\udcff" is no character
        raise InvalidRequest(f"{key} is not Unicode text: {value!r:.80}") from None
    if len(value) > limit:
        raise InvalidRequest(f"{key} is too long ({len(value)} characters, at most {limit})")
    return value


def options_field(body: dict[str, Any]) -> dict[str, str]:
    value = body.get("Options")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"Options must be an object of strings or null, not {_show(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidRequest(f"Options[{key!r:.80}] must be a string, not {_show(item)}")
    return value


def flag_field(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"{key} must be true or false, not {_show(value)}")
    return value


def _show(value: Any) -> str:
    return f"{type(value).__name__} {json.dumps(value)[:60]}"
