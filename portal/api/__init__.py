"""The provisioning API, /api/v1: JSON in and out, a bearer token per call, the pages' rule functions.

Session cookies never authenticate here (so CSRF has no way in), and a token never authenticates a page.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC
from datetime import datetime

from flask import Blueprint
from flask import current_app
from flask import g
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException

from .. import access
from ..access import Actor
from ..access import TokenScope
from ..clientaddr import client_address
from ..db import get_db
from ..i18n import _
from ..queries import api_tokens as token_queries
from ..rules import api_tokens as token_rules
from . import spec
from .problems import ApiProblem
from .problems import from_exception
from .problems import problem_response

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.register_error_handler(ApiProblem, from_exception)


def _unauthorized() -> ApiProblem:
    # One answer for a missing, malformed, unknown, wrong, revoked or expired token, or a disabled holder.
    return ApiProblem(401, _("Send a valid API token: Authorization: Bearer <token>. It may have been revoked "
                             "or have expired."), headers={"WWW-Authenticate": 'Bearer realm="mail-portal"'})


def authenticate() -> Actor:
    """The holder of the request's bearer token, narrowed by it; the call is counted against its limit."""
    scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
    presented = token_rules.parse(value.strip()) if scheme.lower() == "bearer" else None
    if presented is None:
        raise _unauthorized()
    row = token_queries.use(get_db(), presented.token_id, presented.secret_sha256, client_address())
    if row is None:
        raise _unauthorized()
    if row["window_calls"] > int(current_app.config["API_CALLS_PER_MINUTE"]):
        elapsed = (datetime.now(UTC) - row["window_started"]).total_seconds()
        wait = max(1, int(60 - elapsed) + 1)
        raise ApiProblem(429, _("This token made too many calls. Try again in %(n)s seconds.", n=wait),
                         headers={"Retry-After": str(wait)})
    domain_ids = frozenset(row["domain_ids"]) if row["domain_ids"] is not None else None
    g.api_roles = row["roles"]  # what the holder holds now, for this request's reads (rules read again)
    return Actor.of_token(row["email"], row["mailbox_id"], TokenScope(row["id"], domain_ids, row["read_only"]),
                          client_address())


def reading_powers(actor: Actor):
    """What the token's holder may see in this request, narrowed by the token."""
    return access.reading_powers(get_db(), actor, g.get("api_roles"))


def _query_arguments(endpoint: spec.Endpoint) -> dict:
    unknown = sorted(set(request.args) - set(endpoint.query))
    if unknown:
        raise ApiProblem(400, _("Unknown query parameters: %(names)s.", names=", ".join(unknown)),
                         errors={name: [_("Unknown field.")] for name in unknown})
    repeated = sorted(name for name in request.args if len(request.args.getlist(name)) > 1)
    if repeated:
        raise ApiProblem(400, _("The field %(name)s is given twice.", name=repeated[0]),
                         errors={name: [_("Give each field once.")] for name in repeated})
    values: dict = {}
    for name, schema in endpoint.query.items():
        if name not in request.args:
            values[name] = schema.get("default")
            continue
        text = request.args[name]
        if not text.isprintable():
            raise ApiProblem(400, _("The query parameter %(name)s is not valid.", name=name),
                             errors={name: [_("This text holds characters that cannot be stored.")]})
        value: object = text
        if schema.get("type") == "integer":
            value = int(text) if text.isascii() and text.isdigit() and len(text) < 10 else text
        elif schema.get("type") == "boolean":
            value = {"true": True, "false": False}.get(text, text)
        errors = spec.body_errors(schema, value)
        if errors:
            raise ApiProblem(400, _("The query parameter %(name)s is not valid.", name=name),
                             errors={name: errors[""]})
        values[name] = value
    return values


def _number(text: str) -> int | float:
    # JSON Schema counts 5.0 as an integer: so does the API, from the moment the body is read.
    value = float(text)
    return int(value) if value.is_integer() else value


class _DuplicateKey(ValueError):
    """A JSON object names a field twice (the message is the field)."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    # json.loads keeps the last of two equal keys; a proxy or a log may read the first. Neither is what was meant.
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(key for key, _value in pairs if key in seen or seen.add(key)))
    return data


def _unstorable_text(data, where: str = "") -> dict[str, list[str]]:
    # No field takes a NUL or half of a UTF-16 pair: PostgreSQL cannot store them, and no name needs them.
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return {where: [_("This text holds characters that cannot be stored.")]}
        return {where: [_("This text holds characters that cannot be stored.")]} if "\x00" in data else {}
    found: dict[str, list[str]] = {}
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found.update(_unstorable_text(value, ".".join(filter(None, [where, str(key)]))))
    return found


def _body(endpoint: spec.Endpoint):
    if endpoint.body is None:
        if request.content_length:
            raise ApiProblem(400, _("This call takes no request body."))
        return None
    length = request.content_length
    if length is None or length > int(current_app.config["API_MAX_BODY_BYTES"]):
        if length is None:
            raise ApiProblem(411 if not request.headers.get("Transfer-Encoding") else 413,
                             _("Send the body with its Content-Length."))
        raise ApiProblem(413, _("The request body is larger than %(n)s bytes.",
                                n=current_app.config["API_MAX_BODY_BYTES"]))
    if request.mimetype != "application/json":
        raise ApiProblem(415, _("Send the body as application/json."))
    try:
        data = json.loads(request.get_data(cache=False), parse_float=_number, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise ApiProblem(400, _("The field %(name)s is given twice.", name=str(exc)),
                         errors={str(exc): [_("Give each field once.")]}) from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiProblem(400, _("The body is not valid JSON.")) from None
    errors = spec.body_errors(endpoint.body, data) or _unstorable_text(data)
    if errors:
        raise ApiProblem(400, _("Some fields are not valid."), errors=errors)
    return data


def endpoint(method: str, path: str, *, summary: str, response: dict | None, writes: bool = False,
             body: dict | None = None, query: dict | None = None, status: int = 200, authenticated: bool = True,
             converters: dict[str, str] | None = None):
    """Declare an API endpoint (spec.ENDPOINTS) and route it: the view gets the acting token holder, the path
    parameters, and ``body`` / ``args`` when the endpoint declares them."""
    def decorator(view):
        declared = spec.Endpoint(method=method, path=path, name=view.__name__, summary=summary, writes=writes,
                                 response=response or {}, status=status, body=body, query=query or {},
                                 authenticated=authenticated, converters=converters or {})
        spec.ENDPOINTS.append(declared)

        @functools.wraps(view)
        def wrapped(**path_args):
            if not all(value.isprintable() for value in path_args.values()):
                # No domain, mailbox or alias has such a name.
                raise ApiProblem(404, _("There is nothing at this address."))
            extra: dict = {}
            if declared.authenticated:
                actor = authenticate()
                if declared.writes and actor.token.read_only:
                    raise ApiProblem(403, _("This token may only read."))
                extra["actor"] = actor
            if declared.query:
                extra["args"] = _query_arguments(declared)
            elif request.args:
                _query_arguments(declared)
            data = _body(declared)
            if declared.body is not None:
                extra["body"] = data
            result = view(**path_args, **extra)
            if result is None:
                empty = current_app.response_class(status=status)
                del empty.headers["Content-Type"]  # no body, so no type (Flask would say text/html)
                return empty
            response_object = jsonify(result)
            response_object.status_code = status
            return response_object

        bp.add_url_rule(declared.flask_rule, endpoint=view.__name__, view_func=wrapped, methods=[method])
        return wrapped

    return decorator


def api_http_error(exc: HTTPException):
    """Werkzeug's errors (404, 405, 413 ...) under /api/ as problem+json."""
    headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
    messages = {404: _("There is nothing at this address."), 405: _("This address does not take that method."),
                413: _("The request body is too large.")}
    return problem_response(exc.code or 500, messages.get(exc.code, _("The request failed.")), headers=headers)


from . import views  # noqa: E402,F401  the endpoints register themselves on bp
