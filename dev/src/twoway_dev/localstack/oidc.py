"""`twoway-oidc`: a small local OpenID Connect provider, run as its own process.

It serves what a Twoway service needs from an enterprise provider: the discovery document,
the JWKS and a token endpoint (client credentials grant) issuing RS256 JWT access tokens with
roles. With `--admin` (tests only) it also signs arbitrary claims, rotates and revokes keys.
Keys live in memory: a restart is a key rotation. For development, the demo and tests only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOKEN_TTL_SECONDS = 3600


@dataclass(frozen=True)
class Client:
    """A confidential client and the roles its tokens carry."""

    client_id: str
    secret: str
    roles: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Client:
        """`id:secret:role1,role2` (roles may be empty)."""
        client_id, secret, roles = [*text.split(":", 2), "", ""][:3]
        if not client_id or not secret:
            raise ValueError(f"a client is id:secret:roles, not {text!r}")
        return cls(client_id, secret, tuple(r for r in roles.split(",") if r))


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(
            secrets.token_hex(8), rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}


@dataclass
class Provider:
    """The provider's state: issuer, clients and signing keys (the first one signs)."""

    issuer: str
    audience: str = "twoway"
    roles_claim: str = "roles"
    clients: Mapping[str, Client] = field(default_factory=dict)
    keys: list[SigningKey] = field(default_factory=lambda: [SigningKey.generate()])

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks",
            "token_endpoint": f"{self.issuer}/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def sign(self, claims: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> str:
        key = self.keys[0]
        return jwt.encode(
            dict(claims), key.private, algorithm="RS256", headers={"kid": key.kid, **(header or {})}
        )

    def claims_for(self, subject: str, roles: Sequence[str]) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_TTL_SECONDS,
            "jti": secrets.token_hex(8),
            "client_id": subject,
        }
        *parents, last = self.roles_claim.split(".")
        holder = claims
        for part in parents:
            holder = holder.setdefault(part, {})
        holder[last] = list(roles)
        return claims

    def rotate(self) -> str:
        self.keys.insert(0, SigningKey.generate())
        return self.keys[0].kid

    def revoke(self, kid: str) -> bool:
        kept = [k for k in self.keys if k.kid != kid]
        if not kept or len(kept) == len(self.keys):
            return False
        self.keys = kept
        return True


def _client_of(request: Request, form: Mapping[str, Any], provider: Provider) -> Client | None:
    client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        with contextlib.suppress(ValueError):
            pair = base64.b64decode(encoded).decode()
            client_id, _, secret = pair.partition(":")
            client_id = urllib.parse.unquote_plus(client_id)
            secret = urllib.parse.unquote_plus(secret)
    client = provider.clients.get(client_id)
    if client is None or not secrets.compare_digest(client.secret, secret):
        return None
    return client


def create_app(provider: Provider, *, admin: bool = False) -> Starlette:
    """The provider's HTTP endpoints; the `/admin/...` ones only with `admin`."""

    async def discovery(_: Request) -> Response:
        return JSONResponse(provider.discovery())

    async def jwks(_: Request) -> Response:
        return JSONResponse(provider.jwks(), headers={"Cache-Control": "max-age=60"})

    async def token(request: Request) -> Response:
        # application/x-www-form-urlencoded, parsed here (Starlette's form() needs another
        # package for what is one line of the standard library).
        form = dict(urllib.parse.parse_qsl((await request.body()).decode("utf-8", "replace")))
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        client = _client_of(request, form, provider)
        if client is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        access_token = provider.sign(provider.claims_for(client.client_id, client.roles))
        return JSONResponse(
            {"access_token": access_token, "token_type": "Bearer", "expires_in": TOKEN_TTL_SECONDS},
            headers={"Cache-Control": "no-store"},
        )

    async def admin_sign(request: Request) -> Response:
        body = await request.json()
        claims = body.get("claims")
        if claims is None:
            claims = provider.claims_for(str(body.get("sub", "tester")), body.get("roles", []))
            claims.update(body.get("override", {}))
        return JSONResponse({"token": provider.sign(claims, body.get("header"))})

    async def admin_rotate(_: Request) -> Response:
        return JSONResponse({"kid": provider.rotate()})

    async def admin_revoke(request: Request) -> Response:
        revoked = provider.revoke(str((await request.json()).get("kid", "")))
        return JSONResponse({"revoked": revoked}, status_code=200 if revoked else 404)

    async def admin_keys(_: Request) -> Response:
        return JSONResponse({"kids": [k.kid for k in provider.keys]})

    routes = [
        Route("/.well-known/openid-configuration", discovery),
        Route("/jwks", jwks),
        Route("/token", token, methods=["POST"]),
    ]
    if admin:
        routes += [
            Route("/admin/sign", admin_sign, methods=["POST"]),
            Route("/admin/rotate", admin_rotate, methods=["POST"]),
            Route("/admin/revoke", admin_revoke, methods=["POST"]),
            Route("/admin/keys", admin_keys),
        ]
    return Starlette(routes=routes)


def client_credentials_token(issuer: str, client_id: str, secret: str) -> str:
    """An access token from the provider's token endpoint (client credentials grant)."""
    with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", timeout=10) as r:
        endpoint = json.loads(r.read())["token_endpoint"]
    form = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    ).encode()
    with urllib.request.urlopen(urllib.request.Request(endpoint, data=form), timeout=10) as r:
        return str(json.loads(r.read())["access_token"])


class ProviderProcess:
    """`twoway-oidc` as a child process on a local port, stopped again by `stop()`."""

    def __init__(
        self,
        port: int,
        *,
        clients: Sequence[Client] = (),
        admin: bool = False,
        audience: str = "twoway",
        roles_claim: str = "roles",
        log_path: Path | None = None,
    ) -> None:
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.clients = list(clients)
        self.admin = admin
        self.audience = audience
        self.roles_claim = roles_claim
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        argv = [
            sys.executable,
            "-m",
            "twoway_dev.localstack.oidc",
            "--port",
            str(self.port),
            "--audience",
            self.audience,
            "--roles-claim",
            self.roles_claim,
        ]
        for c in self.clients:
            argv += ["--client", f"{c.client_id}:{c.secret}:{','.join(c.roles)}"]
        if self.admin:
            argv.append("--admin")
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(argv, stdout=out, stderr=out, env=dict(os.environ))
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"twoway-oidc exited with {self._process.returncode}")
            try:
                with urllib.request.urlopen(
                    f"{self.issuer}/.well-known/openid-configuration", timeout=2
                ) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"twoway-oidc did not answer on port {self.port}")
            time.sleep(0.1)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def token(self, client_id: str) -> str:
        """A token for one of this provider's clients, from its token endpoint."""
        client = next(c for c in self.clients if c.client_id == client_id)
        return client_credentials_token(self.issuer, client.client_id, client.secret)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="twoway-oidc",
        description="A local OpenID Connect provider for Twoway development and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8180)
    parser.add_argument("--issuer", default=None, help="default http://<host>:<port>")
    parser.add_argument("--audience", default="twoway")
    parser.add_argument("--roles-claim", default="roles", help="dotted path of the roles claim")
    parser.add_argument(
        "--client",
        action="append",
        default=[],
        type=Client.parse,
        help="id:secret:role1,role2 (repeatable)",
    )
    parser.add_argument(
        "--admin", action="store_true", help="serve /admin/* (sign any claims, rotate, revoke)"
    )
    args = parser.parse_args(argv)
    import uvicorn

    issuer = args.issuer or f"http://{args.host}:{args.port}"
    provider = Provider(
        issuer.rstrip("/"),
        audience=args.audience,
        roles_claim=args.roles_claim,
        clients={c.client_id: c for c in args.client},
    )
    uvicorn.run(
        create_app(provider, admin=args.admin),
        host=args.host,
        port=args.port,
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
