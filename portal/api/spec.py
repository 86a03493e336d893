"""The API's endpoints, declared once: the routes are made from these declarations and so is the OpenAPI
document, so the two cannot drift. Request bodies are validated against the same schemas."""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field

from jsonschema import Draft202012Validator

from ..i18n import _


@dataclass
class Endpoint:
    """One method on one path of /api/v1."""

    method: str
    path: str  # OpenAPI form: /domains/{domain}
    name: str
    summary: str
    writes: bool
    response: dict  # JSON schema of a successful answer
    status: int = 200
    body: dict | None = None  # JSON schema of the request body (None: no body)
    query: dict[str, dict] = field(default_factory=dict)  # query parameter -> schema
    authenticated: bool = True
    converters: dict[str, str] = field(default_factory=dict)  # path parameter -> Flask converter ("alias")

    @property
    def flask_rule(self) -> str:
        """The Flask rule for this path: {name} becomes <name>, or <converter:name>."""
        return re.sub(r"\{(\w+)\}", lambda m: f"<{self.converters[m[1]]}:{m[1]}>" if m[1] in self.converters
                      else f"<{m[1]}>", self.path)

    @property
    def path_parameters(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


ENDPOINTS: list[Endpoint] = []

CURSOR_QUERY = {
    "after": {"type": "string", "maxLength": 512, "description": "The cursor `next` of the previous page."},
    "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    "q": {"type": "string", "maxLength": 254, "description": "Only addresses or names containing this."},
}


def page_of(item: dict) -> dict:
    """The schema of one page of a list: its items and the cursor of the next page (null: the last)."""
    return {"type": "object", "required": ["items", "next"], "additionalProperties": False,
            "properties": {"items": {"type": "array", "items": item},
                           "next": {"type": ["string", "null"]}}}


PROBLEM = {
    "type": "object", "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    },
}


def body_errors(schema: dict, data) -> dict[str, list[str]]:
    """Check a request body against its schema; return the problems by field ("" for the body), in the UI's
    language (jsonschema's own messages are English and name the schema's internals)."""
    errors: dict[str, list[str]] = {}
    for error in Draft202012Validator(schema).iter_errors(data):
        where = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "additionalProperties":
            known = set(error.schema.get("properties", {}))
            for unknown in sorted(set(error.instance) - known):
                errors.setdefault(".".join(filter(None, [where, unknown])), []).append(_("Unknown field."))
            continue
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            errors.setdefault(".".join(filter(None, [where, missing])), []).append(_("This field is required."))
            continue
        errors.setdefault(where, []).append(_message(error))
    return errors


def _message(error) -> str:
    rule, value = error.validator, error.validator_value
    if rule == "type":
        kinds = value if isinstance(value, list) else [value]
        return _("Must be of type %(kinds)s.", kinds=_(" or ").join(kinds))
    if rule == "minLength":
        return _("Must be at least %(n)s characters long.", n=value)
    if rule == "maxLength":
        return _("Must be at most %(n)s characters long.", n=value)
    if rule == "minimum":
        return _("Must be at least %(n)s.", n=value)
    if rule == "maximum":
        return _("Must be at most %(n)s.", n=value)
    if rule in ("minItems", "maxItems"):
        return _("Must have between %(low)s and %(high)s entries.", low=error.schema.get("minItems", 0),
                 high=error.schema.get("maxItems", "∞"))
    if rule == "minProperties":
        return _("Give at least one field.")
    if rule == "format":
        return _("Must be a %(format)s.", format=value)
    return _("Not a valid value.")


def openapi_document(server_url: str) -> dict:
    """The OpenAPI 3.1 description of every declared endpoint."""
    paths: dict = {}
    for endpoint in ENDPOINTS:
        operation: dict = {
            "operationId": endpoint.name,
            "summary": endpoint.summary,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                for name in endpoint.path_parameters
            ] + [
                {"name": name, "in": "query", "required": False, "schema": schema}
                for name, schema in endpoint.query.items()
            ],
            "responses": {
                str(endpoint.status): {"description": "Done.",
                                       "content": {"application/json": {"schema": endpoint.response}}}
                if endpoint.response else {"description": "Done."},
                "default": {"description": "A problem (RFC 9457), its detail in the request's language.",
                            "content": {"application/problem+json": {"schema": PROBLEM}}},
            },
        }
        if endpoint.authenticated:
            operation["security"] = [{"token": []}]
        else:
            operation["security"] = []
        if endpoint.body is not None:
            operation["requestBody"] = {"required": True,
                                        "content": {"application/json": {"schema": endpoint.body}}}
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Mail portal provisioning API", "version": "1",
                 "description": "Domains, mailboxes and aliases of the Postfix and Dovecot users in PostgreSQL. "
                                "A token does at most what its holder may do on the pages."},
        "servers": [{"url": server_url}],
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                                     "description": "A token made on the page API tokens."}}},
        "paths": paths,
    }
