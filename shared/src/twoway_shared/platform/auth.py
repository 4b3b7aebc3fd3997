"""Bearer tokens on the read APIs: OpenID Connect discovery, cached JWKS, claims and roles.

CONTRACT.md section 8. PyJWT does every JOSE operation; this module only fetches the keys
(asynchronously, so the event loop never blocks on the provider), decides when to refresh
them, and maps the verified claims to what a request may read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

log = logging.getLogger(__name__)

READER_ROLE = "twoway.reader"
MANAGER_ROLE_PREFIX = "twoway.manager:"
LEEWAY_SECONDS = 60
MIN_REFRESH_SECONDS = 60.0
"""A token with an unknown `kid` refetches the keys, but at most this often."""
MAX_KEY_AGE_SECONDS = 300.0
"""Cached keys are refetched after this long, so a key the provider revoked stops working."""

# Asymmetric algorithms only: `none` and the HMAC family (HS*) are never accepted, so a
# token "signed" with a public key as an HMAC secret fails before any key is looked at.
_KEY_TYPES = {
    **{f"RS{n}": "RSA" for n in (256, 384, 512)},
    **{f"PS{n}": "RSA" for n in (256, 384, 512)},
    **{f"ES{n}": "EC" for n in (256, 384, 512)},
    "EdDSA": "OKP",
}
ASYMMETRIC_ALGORITHMS = frozenset(_KEY_TYPES)


class InvalidToken(Exception):
    """The token is missing, malformed, unsigned, badly signed, expired or not for us."""


class KeysUnavailable(Exception):
    """The provider's keys could not be fetched and none are cached."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for, and the Twoway roles it carries."""

    subject: str | None
    roles: frozenset[str]

    @property
    def reader(self) -> bool:
        return READER_ROLE in self.roles

    def manages(self, programme_id: str) -> bool:
        return f"{MANAGER_ROLE_PREFIX}{programme_id}" in self.roles

    @property
    def manages_any(self) -> bool:
        return any(role.startswith(MANAGER_ROLE_PREFIX) for role in self.roles)


class ProviderKeys:
    """The issuer's signing keys by `kid`, found via its discovery document and cached."""

    def __init__(
        self,
        issuer: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_refresh: float = MIN_REFRESH_SECONDS,
        max_age: float = MAX_KEY_AGE_SECONDS,
        timeout: float = 5.0,
    ) -> None:
        self.issuer = issuer
        self._clock = clock
        self._min_refresh = min_refresh
        self._max_age = max_age
        self._timeout = timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id; refetched when stale, or when unknown (rate-limited)."""
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self._max_age
        if stale or (kid not in self._keys and self._may_refresh(now)):
            await self._refresh()
        return self._keys.get(kid)

    def _may_refresh(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refresh

    async def _refresh(self) -> None:
        async with self._lock:
            now = self._clock()
            # Concurrent requests queue here; the first refreshes, the rest find it done.
            if self._may_refresh(now):
                self._attempted_at = now
                try:
                    keys = await self._fetch()
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                    log.error(
                        "could not fetch the OpenID Connect provider's keys",
                        extra={"issuer": self.issuer, "error": f"{type(exc).__name__}: {exc}"},
                    )
                else:
                    self._keys, self._fetched_at = keys, now
                    self.fetches += 1
            if self._fetched_at is None:
                raise KeysUnavailable("the provider's keys could not be fetched")

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        discovery_url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
            discovery = (await client.get(discovery_url)).raise_for_status().json()
            if discovery.get("issuer") != self.issuer:
                raise ValueError("the discovery document names another issuer")
            jwks = (await client.get(str(discovery["jwks_uri"]))).raise_for_status().json()
        keys: dict[str, jwt.PyJWK] = {}
        for data in jwks.get("keys", []):
            if data.get("use", "sig") != "sig" or not isinstance(data.get("kid"), str):
                continue
            try:
                keys[data["kid"]] = jwt.PyJWK(data)
            except jwt.PyJWTError:
                continue  # a key type or algorithm we do not use
        return keys


def roles_of(claims: Mapping[str, Any], path: str) -> frozenset[str]:
    """The roles at a dotted claim path: a list of strings or one space-separated string."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return frozenset()
        value = value.get(part)
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


class TokenVerifier:
    """Checks a bearer token as section 8 says: signature, `iss`, `aud`, `exp`, `nbf`."""

    def __init__(self, keys: ProviderKeys, *, audience: str, roles_claim: str) -> None:
        self.keys = keys
        self.audience = audience
        self.roles_claim = roles_claim

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ASYMMETRIC_ALGORITHMS or not isinstance(kid, str):
            raise InvalidToken("algorithm or key id not acceptable")
        key = await self.keys.key(kid)
        if key is None:
            raise InvalidToken("unknown key")
        if key.key_type != _KEY_TYPES[alg] or key.algorithm_name not in (alg, None):
            raise InvalidToken("algorithm does not fit the key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.keys.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        subject = claims.get("sub")
        return Principal(
            subject if isinstance(subject, str) else None, roles_of(claims, self.roles_claim)
        )
