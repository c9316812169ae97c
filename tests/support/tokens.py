"""Test-side signing keys and JWTs, shaped like the CDS clients we must accept (and refuse)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.leak_guard import register_secret


@dataclass
class SigningKey:
    """A private key with its public JWK; `alg` is ES384 or RS384."""

    alg: str
    kid: str
    private_key: Any = field(repr=False)

    @classmethod
    def generate(cls, alg: str = "ES384", kid: str | None = None) -> SigningKey:
        if alg == "ES384":
            private_key = ec.generate_private_key(ec.SECP384R1())
        elif alg == "RS384":
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ValueError(f"unsupported test algorithm {alg}")
        key_id = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        return cls(alg=alg, kid=key_id, private_key=private_key)

    def public_jwk(self) -> dict[str, Any]:
        algorithm = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        jwk = json.loads(algorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk


def jwks(*keys: SigningKey) -> dict[str, Any]:
    """A JWK Set holding the public halves of `keys`."""
    return {"keys": [key.public_jwk() for key in keys]}


def make_token(
    key: SigningKey,
    *,
    iss: str,
    aud: str | list[str],
    lifetime: int = 300,
    jku: str | None = None,
    extra_claims: dict[str, Any] | None = None,
    drop_claims: tuple[str, ...] = (),
    headers: dict[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """Sign a CDS Hooks client JWT: iss, aud, iat, exp, jti, plus any extras."""
    issued_at = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "iat": issued_at,
        "exp": issued_at + lifetime,
        "jti": str(uuid.uuid4()),
    }
    claims.update(extra_claims or {})
    for name in drop_claims:
        claims.pop(name, None)
    header: dict[str, Any] = {"kid": key.kid, "typ": "JWT"}
    if jku:
        header["jku"] = jku
    header.update(headers or {})
    return register_secret(jwt.encode(claims, key.private_key, algorithm=key.alg, headers=header))


def fhir_authorization(access_token: str | None = None, **fields: Any) -> dict[str, Any]:
    """A `fhirAuthorization` object whose access token is registered with the leak guard."""
    token = register_secret(access_token or f"test-access-{uuid.uuid4().hex}")
    authorization: dict[str, Any] = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/Patient.read patient/Observation.read",
        "subject": "picu-endotype",
    }
    authorization.update(fields)
    return authorization
