"""The emulator's plain-HTTP face: the SKR sidecar API, the MAA issuer's ``/certs``, a managed-identity endpoint.

NOT A TEE. Routes and bodies follow microsoft/confidential-sidecar-containers
(``cmd/skr``): bad input is 400 ``{"error": ...}``, attestation or release
failures are 403 ``{"error": ...}``. The identity endpoint speaks the App
Service managed-identity protocol that ``azure-identity`` selects when
``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.wire.runtime_data import canonical_json
from app.emulator.keystore import ReleaseRefused
from app.emulator.emulator_state import EmulatorState

IDENTITY_TOKEN_PATH = "/msi/token"
MAX_BODY_BYTES = 64 * 1024
# What the real sidecar binds when it attests for a release: a JSON object (its wrapping key set).
_RELEASE_RUNTIME_DATA = canonical_json({"keys": []})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request, required: tuple[str, ...]) -> dict[str, Any] | JSONResponse:
    raw = await request.body()
    try:
        body = json.loads(raw) if len(raw) <= MAX_BODY_BYTES else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or not all(isinstance(body.get(f), str) and body[f] for f in required):
        return _error(400, f"invalid request format: required fields {', '.join(required)}")
    return body


def build_sidecar_app(state: EmulatorState) -> Starlette:
    """The Starlette app serving the sidecar routes, ``/certs`` and the identity endpoint."""

    def _unknown_maa(endpoint: str) -> JSONResponse | None:
        if endpoint.strip().rstrip("/").removeprefix("https://").removeprefix("http://") != state.maa_endpoint:
            return _error(403, f"attestation failed: MAA endpoint {endpoint[:80]!r} is not reachable")
        return None

    async def status(request: Request) -> JSONResponse:
        return JSONResponse({"message": "Status OK"})

    async def attest_maa(request: Request) -> JSONResponse:
        body = await _json_body(request, ("maa_endpoint", "runtime_data"))
        if isinstance(body, JSONResponse):
            return body
        try:
            runtime_data = base64.b64decode(body["runtime_data"], validate=True)
        except (binascii.Error, ValueError):
            return _error(400, "decoding base64-encoded runtime data of request failed")
        refusal = _unknown_maa(body["maa_endpoint"])
        if refusal:
            return refusal
        try:
            return JSONResponse({"token": state.issuer.mint(runtime_data)})
        except ValueError:
            return _error(403, "attestation failed: runtime data is not a JSON object")

    async def key_release(request: Request) -> JSONResponse:
        body = await _json_body(request, ("maa_endpoint", "akv_endpoint", "kid"))
        if isinstance(body, JSONResponse):
            return body
        refusal = _unknown_maa(body["maa_endpoint"])
        if refusal:
            return refusal
        if body["akv_endpoint"].strip().rstrip("/").removeprefix("https://") != state.akv_endpoint:
            return _error(403, "secure key release failed: key vault endpoint is not reachable")
        claims = state.issuer.claims_for(_RELEASE_RUNTIME_DATA)
        try:
            key = state.keystore.release(body["kid"], claims, issuer=claims["iss"], vault_url=state.vault_url)
        except ReleaseRefused as exc:
            return _error(403, f"secure key release failed: {exc}")
        return JSONResponse({"key": key})

    async def certs(request: Request) -> JSONResponse:
        return JSONResponse(state.issuer.jwks())

    async def identity_token(request: Request) -> JSONResponse:
        header = request.headers.get("x-identity-header", "")
        if not hmac.compare_digest(header.encode(), state.identity_header.encode()):
            return JSONResponse({"statusCode": 401, "message": "missing or wrong X-IDENTITY-HEADER"}, status_code=401)
        client_id = request.query_params.get("client_id")
        if state.identity_client_id and client_id != state.identity_client_id:
            return JSONResponse({"statusCode": 400, "message": "no managed identity with that client id"},
                                status_code=400)
        token, expires = state.issue_access_token()
        return JSONResponse({"access_token": token, "expires_on": str(expires), "token_type": "Bearer",
                             "resource": request.query_params.get("resource", ""), "client_id": client_id or ""})

    return Starlette(routes=[
        Route("/status", status, methods=["GET"]),
        Route("/attest/maa", attest_maa, methods=["POST"]),
        Route("/key/release", key_release, methods=["POST"]),
        Route("/certs", certs, methods=["GET"]),
        Route(IDENTITY_TOKEN_PATH, identity_token, methods=["GET"]),
    ])
