"""The emulator's Key Vault stand-in (HTTPS): secrets get/set and key read, behind the bearer challenge.

NOT A TEE. The real ``azure-keyvault-secrets`` / ``azure-keyvault-keys``
clients talk to it unchanged: an unauthenticated request gets Key Vault's 401
challenge, the client fetches a token from the managed-identity endpoint and
retries with it. The SDK insists that the vault host be a subdomain of the
challenge's resource; ``127.0.0.1:PORT`` textually ends with ``.0.0.1:PORT``,
so the resource is ``https://0.0.1:PORT`` and the SDK's check stays on.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.emulator.emulator_state import EmulatorState

_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_VERSION = re.compile(r"^[0-9A-Za-z]{0,64}$")
FAKE_TENANT_ID = "00000000-0000-0000-0000-000000000000"
MAX_SECRET_BYTES = 25 * 1024  # Key Vault's own limit on a secret value.


def _vault_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def challenge_resource(vault_url: str) -> str:
    """The resource the 401 challenge names (see the module docstring for why it looks odd)."""
    port = vault_url.rsplit(":", 1)[1]
    return f"https://0.0.1:{port}"


def build_vault_app(state: EmulatorState) -> Starlette:
    """The Starlette app serving ``/secrets`` and ``/keys`` the way Key Vault does."""
    challenge = (f'Bearer authorization="https://login.microsoftonline.com/{FAKE_TENANT_ID}", '
                 f'resource="{challenge_resource(state.vault_url)}"')

    def _unauthorised(request: Request) -> JSONResponse | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and state.access_token_valid(token.strip()):
            return None
        return _vault_error(401, "Unauthorized", "AKV10000: Request is missing a valid Bearer token.",
                            headers={"WWW-Authenticate": challenge})

    def _names(request: Request) -> tuple[str, str] | JSONResponse:
        name, version = request.path_params["name"], request.path_params.get("version", "")
        if not _NAME.match(name) or not _VERSION.match(version):
            return _vault_error(400, "BadParameter", "invalid name or version")
        return name, version

    def _checked_names(request: Request) -> tuple[str, str] | JSONResponse:
        """Valid names from an authorised caller, or the error response to send."""
        names = _names(request)
        if isinstance(names, JSONResponse):
            return names
        return _unauthorised(request) or names

    async def get_secret(request: Request) -> JSONResponse:
        names = _checked_names(request)
        if isinstance(names, JSONResponse):
            return names
        bundle = state.get_secret(*names)
        if bundle is None:
            return _vault_error(404, "SecretNotFound", f"A secret with (name/id) {names[0]} was not found in this key vault.")
        return JSONResponse(bundle)

    async def set_secret(request: Request) -> JSONResponse:
        names = _checked_names(request)
        if isinstance(names, JSONResponse):
            return names
        try:
            body: Any = json.loads(await request.body())
        except ValueError:
            body = None
        value = body.get("value") if isinstance(body, dict) else None
        if not isinstance(value, str) or len(value.encode()) > MAX_SECRET_BYTES:
            return _vault_error(400, "BadParameter", "value must be a string of at most 25 KiB")
        return JSONResponse(state.put_secret(names[0], value, body.get("contentType")))

    async def get_key(request: Request) -> JSONResponse:
        names = _checked_names(request)
        if isinstance(names, JSONResponse):
            return names
        if not state.keystore.matches("/".join(part for part in names if part)):
            return _vault_error(404, "KeyNotFound", f"A key with (name/id) {names[0]} was not found in this key vault.")
        return JSONResponse(state.keystore.key_bundle(state.vault_url))

    return Starlette(routes=[
        Route("/secrets/{name}", get_secret, methods=["GET"]),
        Route("/secrets/{name}", set_secret, methods=["PUT"]),
        Route("/secrets/{name}/{version:path}", get_secret, methods=["GET"]),
        Route("/keys/{name}", get_key, methods=["GET"]),
        Route("/keys/{name}/{version:path}", get_key, methods=["GET"]),
    ])
