#!/usr/bin/env python3
"""Verifies fluxgate's X-Fluxgate-Assertion in a Python backend (docs/assertions.md).

    pip install pyjwt cryptography
    python3 verify_assertion.py http://fluxgate.internal:8080/.well-known/jwks.json "$ASSERTION" api.example.com

Prints the claims as JSON, or exits 1 saying why the assertion is refused.
tests/it/assertion_jwks.rs runs this script against a live fluxgate.
"""
import json
import sys

import jwt

# One client per process: it caches the keys and fetches the set again when an assertion names a
# kid it has not seen (fluxgate publishes a key before it signs with it).
_clients = {}


def verify(jwks_url, token, host):
    client = _clients.setdefault(jwks_url, jwt.PyJWKClient(jwks_url, lifespan=300))
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        # Only the asymmetric algorithms: never let the token choose HS256 (or "none").
        algorithms=["ES256", "EdDSA"],
        issuer="fluxgate",
        options={"require": ["exp", "iat", "iss"]},
        leeway=5,
    )
    if claims.get("host") != host:
        raise jwt.InvalidTokenError(f"assertion for host {claims.get('host')!r}, not {host!r}")
    # claims["jti"] is unique per assertion: remember it until claims["exp"] to refuse a replay.
    return claims


def main():
    if len(sys.argv) != 4:
        print("usage: verify_assertion.py <jwks-url> <assertion> <host>", file=sys.stderr)
        return 2
    try:
        claims = verify(*sys.argv[1:])
    except jwt.PyJWTError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
