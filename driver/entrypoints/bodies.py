"""Reading and answering the plugin socket's JSON bodies, for Docker's calls and CNI's alike.

Docker sends no Content-Type, so bodies are parsed as JSON whatever the headers say, and an
empty body is an empty request; a value of the wrong type is refused, naming the field.
Every body is a declared struct (Docker's in :mod:`driver.entrypoints.wire`, CNI's in
:mod:`driver.entrypoints.wire_cni`) that msgspec decodes and validates in one pass; only a
refused body is read again, to word the refusal.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any, TypeVar

import msgspec
from flask import Response, request

from driver.domain.cni_spec import MAX_CALL_BODY
from driver.domain.errors import InvalidRequest

# every call's body is bounded: Docker's and CNI's at 64 KiB, but for CNI's GC (see api_cni)
MAX_BODY = MAX_CALL_BODY
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"

Body = TypeVar("Body", bound=msgspec.Struct)
_ENCODE = msgspec.json.Encoder().encode
# msgspec's refusals: "Object missing required field `X`", "... - at `$.X`" or "`$.X[...]`"
_MISSING = re.compile(r"Object missing required field `([^`]*)`")
_AT = re.compile(r" - at `\$\.?([^`\[]*)")
_GOT = re.compile(r"got `([a-z]+)`")
# msgspec's JSON type names as Python's, as the refusals named them before
_PYTHON_NAMES = {"array": "list", "object": "dict", "null": "NoneType", "number": "float"}


def reply(payload: dict[str, Any] | msgspec.Struct, status: int = 200) -> Response:
    # a dict is an error or CNI's answer, which may quote a caller's lone surrogate: json
    # escapes it where a UTF-8 encoder cannot
    text = _ENCODE(payload) if isinstance(payload, msgspec.Struct) else json.dumps(payload)
    return Response(text, status=status, mimetype=CONTENT_TYPE)


def decode(kind: type[Body], *, required: bool = True) -> Body:
    """The request's body as ``kind``; an empty (or, unless required, null) body has no fields."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        if required:
            raise InvalidRequest("empty request body: expected a JSON object")
        raw = b"{}"
    try:
        body = msgspec.json.decode(raw, type=kind if required else kind | None)
    except msgspec.ValidationError as e:  # before DecodeError: it is one
        raise InvalidRequest(_refusal(kind, raw, str(e))) from None
    except (msgspec.DecodeError, RecursionError) as e:
        raise InvalidRequest(_malformed(raw, e)) from None
    return kind() if body is None else body


def _malformed(raw: bytes, error: Exception) -> str:
    # Python's parser words it as the driver always did; what it takes and msgspec does not is
    # no JSON Docker sends: a lone surrogate (named with its field, as before) or NaN
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as e:
        return f"request body is not valid JSON: {str(e)[:120]}"
    for key, value in body.items() if isinstance(body, dict) else ():
        if isinstance(value, str) and not _is_unicode(value):
            return f"{key} is not Unicode text: {value!r:.80}"
    return f"request body is not valid JSON: {str(error)[:120]}"


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: JSON's "\udcff" is no character
        return False
    return True


def _refusal(kind: type[msgspec.Struct], raw: bytes, message: str) -> str:
    """msgspec's refusal of a body, in the words of the field's declared type."""
    missing = _MISSING.match(message)
    if missing:
        return f"missing {missing[1]} in request body"
    at, got = _AT.search(message), _GOT.search(message)
    if at is None:
        found = got[1] if got else "object"
        return f"request body must be a JSON object, not {_PYTHON_NAMES.get(found, found)}"
    name = at[1]
    try:
        body = json.loads(raw, object_pairs_hook=_Object.of)
    except (ValueError, RecursionError) as e:
        return f"request body is not valid JSON: {str(e)[:120]}"
    value = body.get(name)
    # msgspec refused one of a key's values, Python's json keeps the last: say which is unknown
    if name in body.twice:
        return f"{name} is given twice"
    if isinstance(value, _Object) and value.twice:
        return f"{name}[{min(value.twice)!r:.80}] is given twice"
    return _field_refusal(name, _declared(kind)[name], value)


class _Object(dict[str, Any]):
    """A JSON object read to word a refusal, with the keys it names more than once."""

    twice: frozenset[str] = frozenset()

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> _Object:
        found = cls(pairs)
        if len(found) < len(pairs):
            keys = [key for key, _ in pairs]
            found.twice = frozenset(key for key in found if keys.count(key) > 1)
        return found


def _field_refusal(name: str, declared: msgspec.inspect.Type, value: Any) -> str:
    if value is None:
        return f"missing {name} in request body"
    if isinstance(declared, msgspec.inspect.BoolType):
        return f"{name} must be true or false, not {_show(value)}"
    if isinstance(declared, msgspec.inspect.DictType):
        if not isinstance(value, dict):
            return f"{name} must be an object of strings or null, not {_show(value)}"
        key, item = next(((k, v) for k, v in value.items() if not isinstance(v, str)), ("", None))
        return f"{name}[{key!r:.80}] must be a string, not {_show(item)}"
    assert isinstance(declared, msgspec.inspect.StrType)
    if not isinstance(value, str):
        return f"{name} must be a string, not {_show(value)}"
    if not value:
        return f"{name} must not be empty"
    return f"{name} is too long ({len(value)} characters, at most {declared.max_length})"


@cache
def _declared(kind: type[msgspec.Struct]) -> dict[str, msgspec.inspect.Type]:
    """Each wire field's declared type, null taken out (null is the field's absence)."""
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    return {field.encode_name: _not_null(field.type) for field in info.fields}


def _not_null(declared: msgspec.inspect.Type) -> msgspec.inspect.Type:
    if isinstance(declared, msgspec.inspect.UnionType):
        types = [t for t in declared.types if not isinstance(t, msgspec.inspect.NoneType)]
        return types[0]
    return declared


def _show(value: Any) -> str:
    return f"{type(value).__name__} {json.dumps(value)[:60]}"
