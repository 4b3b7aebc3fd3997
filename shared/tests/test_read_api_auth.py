"""Bearer tokens on the read API (CONTRACT.md section 8), against a real provider process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twoway_dev.testing.oidc import TestProvider
from twoway_shared.platform.auth import ProviderKeys, TokenVerifier
from twoway_shared.platform.http import (
    CAPABILITY,
    Guard,
    create_http_app,
    programme_access,
    read_route,
)
from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.settings import Settings

PROGRAMMES = {"P1", "P2"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def programme_pairs(request: Request) -> Response:
    programme_id = request.path_params["programme_id"]
    if programme_id not in PROGRAMMES:
        return JSONResponse({"error": "unknown programme"}, status_code=404)
    return JSONResponse({"programme_id": programme_id})


async def participant_pair(request: Request) -> Response:
    if request.path_params["participant_id"] != "E1":
        return JSONResponse({"error": "unknown participant"}, status_code=404)
    return JSONResponse({"participant_id": "E1"})


async def by_token(_: Request) -> Response:
    return Response("feed")


ROUTES = [
    read_route("/programmes/{programme_id}/pairs", programme_pairs, access=programme_access()),
    Route("/participants/{participant_id}/pair", participant_pair),  # undeclared: reader
    read_route("/calendars/{token}.ics", by_token, access=CAPABILITY),
]


def app_for(guard: Guard) -> httpx.AsyncClient:
    app = create_http_app(service="t", metrics=Metrics(), checks={}, routes=ROUTES, guard=guard)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


class Api:
    """A read API trusting the session's provider, with a clock the test moves."""

    def __init__(self, oidc: TestProvider) -> None:
        self.clock = FakeClock()
        self.keys = ProviderKeys(oidc.issuer, clock=self.clock)
        self.client = app_for(
            Guard(TokenVerifier(self.keys, audience="twoway", roles_claim="roles"))
        )

    async def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return await self.client.get(path, headers=headers)


@pytest.fixture
async def api(oidc: TestProvider) -> AsyncIterator[Api]:
    made = Api(oidc)
    async with made.client:
        yield made


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unsigned(header: dict[str, object], claims: dict[str, object], signature: bytes) -> str:
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(signature)}"


def claims(oidc: TestProvider, **override: object) -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": oidc.issuer,
        "aud": "twoway",
        "sub": "x",
        "iat": now,
        "exp": now + 600,
        "roles": ["twoway.reader"],
        **override,
    }


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json() == {"error": "unauthorized"}  # never says which check failed


async def test_no_token_or_not_bearer_is_401(api: Api) -> None:
    assert_unauthorized(await api.get("/programmes/P1/pairs"))
    assert_unauthorized(await api.get("/participants/E1/pair", token=""))
    basic = await api.client.get(
        "/participants/E1/pair", headers={"Authorization": "Basic dXNlcjpwdw=="}
    )
    assert_unauthorized(basic)
    assert_unauthorized(await api.get("/participants/E1/pair", token="not.a.jwt"))


async def test_token_from_the_token_endpoint_reads(api: Api, oidc: TestProvider) -> None:
    token = oidc.token()
    assert (await api.get("/programmes/P1/pairs", token)).json() == {"programme_id": "P1"}
    assert (await api.get("/participants/E1/pair", token)).status_code == 200


async def test_health_metrics_and_capability_routes_need_no_token(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/calendars/anything.ics"):
        assert (await api.get(path)).status_code == 200, path


async def test_expiry_and_not_before_with_60_s_leeway(api: Api, oidc: TestProvider) -> None:
    now = int(time.time())
    assert_unauthorized(await api.get("/participants/E1/pair", oidc.mint(exp=now - 90)))
    assert_unauthorized(await api.get("/participants/E1/pair", oidc.mint(nbf=now + 120)))
    within = oidc.mint(exp=now - 20, nbf=now + 20)
    assert (await api.get("/participants/E1/pair", within)).status_code == 200


async def test_wrong_issuer_wrong_audience_missing_claims(api: Api, oidc: TestProvider) -> None:
    assert_unauthorized(await api.get("/participants/E1/pair", oidc.mint(iss="https://evil")))
    assert_unauthorized(await api.get("/participants/E1/pair", oidc.mint(aud="other-app")))
    no_exp = claims(oidc)
    del no_exp["exp"]
    assert_unauthorized(await api.get("/participants/E1/pair", oidc.sign(no_exp)))
    no_aud = claims(oidc)
    del no_aud["aud"]
    assert_unauthorized(await api.get("/participants/E1/pair", oidc.sign(no_aud)))
    listed = oidc.mint(aud=["other-app", "twoway"])
    assert (await api.get("/participants/E1/pair", listed)).status_code == 200


async def test_alg_none_is_refused(api: Api, oidc: TestProvider) -> None:
    kid = oidc.kids()[0]
    token = unsigned({"alg": "none", "typ": "JWT", "kid": kid}, claims(oidc), b"")
    assert_unauthorized(await api.get("/participants/E1/pair", token))
    no_kid = unsigned({"alg": "none"}, claims(oidc), b"")
    assert_unauthorized(await api.get("/participants/E1/pair", no_kid))


async def test_hs256_signed_with_the_public_key_is_refused(api: Api, oidc: TestProvider) -> None:
    jwk = next(k for k in oidc.jwks()["keys"] if k["kid"] == oidc.kids()[0])
    public = jwt.PyJWK(jwk).key
    from cryptography.hazmat.primitives import serialization

    secrets = [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(jwk).encode(),
    ]
    for secret in secrets:
        header = {"alg": "HS256", "typ": "JWT", "kid": jwk["kid"]}
        head = b64(json.dumps(header).encode())
        body = b64(json.dumps(claims(oidc)).encode())
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        assert_unauthorized(await api.get("/participants/E1/pair", f"{head}.{body}.{b64(mac)}"))


async def test_a_tampered_or_foreign_signature_is_refused(api: Api, oidc: TestProvider) -> None:
    token = oidc.mint()
    head, _, signature = token.split(".")
    forged_body = b64(json.dumps(claims(oidc, roles=["twoway.reader", "x"])).encode())
    forged = f"{head}.{forged_body}.{signature}"
    assert_unauthorized(await api.get("/participants/E1/pair", forged))
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    foreign = jwt.encode(claims(oidc), stranger, algorithm="RS256", headers={"kid": oidc.kids()[0]})
    assert_unauthorized(await api.get("/participants/E1/pair", foreign))


async def test_unknown_kid_after_rotation_succeeds_once_keys_are_refetched(
    api: Api, oidc: TestProvider
) -> None:
    assert (await api.get("/participants/E1/pair", oidc.mint())).status_code == 200
    assert api.keys.fetches == 1
    oidc.rotate()
    rotated = oidc.mint()
    # The keys were fetched a moment ago: an unknown kid may refetch at most once a minute.
    api.clock.now += 10
    assert_unauthorized(await api.get("/participants/E1/pair", rotated))
    assert api.keys.fetches == 1
    api.clock.now += 50
    assert (await api.get("/participants/E1/pair", rotated)).status_code == 200
    assert api.keys.fetches == 2
    # Many requests with random kids cost no more fetches than one a minute.
    for n in range(20):
        forged = oidc.mint(header={"kid": f"nope-{n}"})
        assert_unauthorized(await api.get("/participants/E1/pair", forged))
    assert api.keys.fetches == 2


async def test_a_revoked_key_stops_working(api: Api, oidc: TestProvider) -> None:
    old_kid = oidc.kids()[0]
    old_token = oidc.mint()
    assert (await api.get("/participants/E1/pair", old_token)).status_code == 200
    new_kid = oidc.rotate()
    oidc.revoke(old_kid)
    assert old_kid not in oidc.kids()
    assert oidc.kids()[0] == new_kid
    # The next refetch (at the latest after five minutes) drops the revoked key.
    api.clock.now += 301
    assert_unauthorized(await api.get("/participants/E1/pair", old_token))
    assert (await api.get("/participants/E1/pair", oidc.mint())).status_code == 200


async def test_a_revoked_key_is_dropped_when_a_new_kid_refreshes(
    api: Api, oidc: TestProvider
) -> None:
    old_kid = oidc.kids()[0]
    old_token = oidc.mint()
    assert (await api.get("/participants/E1/pair", old_token)).status_code == 200
    oidc.rotate()
    oidc.revoke(old_kid)
    api.clock.now += 61
    assert (await api.get("/participants/E1/pair", oidc.mint())).status_code == 200
    assert_unauthorized(await api.get("/participants/E1/pair", old_token))


async def test_roles(api: Api, oidc: TestProvider) -> None:
    nobody = oidc.mint(roles=["twoway.other", "reader"])
    for path in ("/programmes/P1/pairs", "/participants/E1/pair", "/participants/E9/pair"):
        response = await api.get(path, nobody)
        assert response.status_code == 403, path
        assert response.json() == {"error": "forbidden"}
    manager = oidc.mint(roles=["twoway.manager:P1"])
    assert (await api.get("/programmes/P1/pairs", manager)).status_code == 200
    # Another programme: 403 whether it exists (P2) or not (NOPE), never 404.
    assert (await api.get("/programmes/P2/pairs", manager)).status_code == 403
    assert (await api.get("/programmes/NOPE/pairs", manager)).status_code == 403
    assert (await api.get("/participants/E1/pair", manager)).status_code == 403
    reader = oidc.mint()
    assert (await api.get("/programmes/NOPE/pairs", reader)).status_code == 404
    assert (await api.get("/participants/E9/pair", reader)).status_code == 404
    spaced = oidc.sign(claims(oidc, roles="twoway.manager:P2 twoway.manager:P1"))
    assert (await api.get("/programmes/P2/pairs", spaced)).status_code == 200


async def test_nested_roles_claim(oidc: TestProvider) -> None:
    keys = ProviderKeys(oidc.issuer)
    verifier = TokenVerifier(keys, audience="twoway", roles_claim="realm_access.roles")
    async with app_for(Guard(verifier)) as client:
        nested = oidc.mint(roles=[], realm_access={"roles": ["twoway.reader"]})
        flat = oidc.mint()
        ok = await client.get(
            "/participants/E1/pair", headers={"Authorization": f"Bearer {nested}"}
        )
        assert ok.status_code == 200
        no = await client.get("/participants/E1/pair", headers={"Authorization": f"Bearer {flat}"})
        assert no.status_code == 403


async def test_closed_without_issuer_and_open_only_when_disabled(
    oidc: TestProvider, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        closed = Guard.from_settings(Settings(), "t")
    assert "TWOWAY_OIDC_ISSUER" in caplog.text
    async with app_for(closed) as client:
        token = oidc.mint()
        response = await client.get(
            "/participants/E1/pair", headers={"Authorization": f"Bearer {token}"}
        )
        assert_unauthorized(response)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        opened = Guard.from_settings(Settings(auth_disabled=True), "t")
    assert "TWOWAY_AUTH_DISABLED" in caplog.text
    async with app_for(opened) as client:
        assert (await client.get("/programmes/P1/pairs")).status_code == 200
    async with app_for(Guard.from_settings(Settings(oidc_issuer=oidc.issuer), "t")) as client:
        response = await client.get(
            "/participants/E1/pair", headers={"Authorization": f"Bearer {oidc.mint()}"}
        )
        assert response.status_code == 200


async def test_unreachable_provider_is_503_not_a_pass(oidc: TestProvider) -> None:
    keys = ProviderKeys("http://127.0.0.1:9")  # nothing listens on the discard port
    async with app_for(Guard(TokenVerifier(keys, audience="twoway", roles_claim="roles"))) as c:
        response = await c.get(
            "/participants/E1/pair", headers={"Authorization": f"Bearer {oidc.mint()}"}
        )
    assert response.status_code == 503
