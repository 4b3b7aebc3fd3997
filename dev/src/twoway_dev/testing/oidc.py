"""A real local OpenID Connect provider process for tests, with its admin controls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from twoway_dev.localstack.oidc import Client, ProviderProcess

READER_CLIENT = Client("twoway-tests", "tests-secret", ("twoway.reader",))


class TestProvider(ProviderProcess):
    """`twoway-oidc --admin`: mints tokens with any claims, rotates and revokes keys."""

    __test__ = False  # not a pytest test class

    def __init__(self, port: int) -> None:
        super().__init__(port, clients=[READER_CLIENT], admin=True)

    def _post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        response = httpx.post(f"{self.issuer}{path}", json=dict(body or {}), timeout=10)
        response.raise_for_status()
        return response.json()

    def token(self, client_id: str = READER_CLIENT.client_id) -> str:
        return super().token(client_id)

    def mint(
        self,
        roles: Iterable[str] = ("twoway.reader",),
        *,
        header: Mapping[str, Any] | None = None,
        **override: Any,
    ) -> str:
        """A token signed by the provider's current key; `override` replaces claims."""
        body = {"roles": list(roles), "override": override, "header": dict(header or {})}
        return str(self._post("/admin/sign", body)["token"])

    def sign(self, claims: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> str:
        """Exactly these claims, signed by the provider's current key."""
        return str(self._post("/admin/sign", {"claims": dict(claims), "header": header})["token"])

    def rotate(self) -> str:
        """A new signing key, published next to the old ones; its kid."""
        return str(self._post("/admin/rotate")["kid"])

    def revoke(self, kid: str) -> None:
        """Removes a key from the JWKS."""
        self._post("/admin/revoke", {"kid": kid})

    def kids(self) -> list[str]:
        response = httpx.get(f"{self.issuer}/admin/keys", timeout=10)
        return list(response.raise_for_status().json()["kids"])

    def jwks(self) -> dict[str, Any]:
        response = httpx.get(f"{self.issuer}/jwks", timeout=10)
        result: dict[str, Any] = response.raise_for_status().json()
        return result

    def settings(self) -> dict[str, Any]:
        """The service settings that trust this provider."""
        return {"oidc_issuer": self.issuer, "oidc_audience": self.audience}

    def env(self) -> dict[str, str]:
        return {"TWOWAY_OIDC_ISSUER": self.issuer, "TWOWAY_OIDC_AUDIENCE": self.audience}
