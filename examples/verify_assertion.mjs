#!/usr/bin/env node
// Verifies fluxgate's X-Fluxgate-Assertion in a Node backend (docs/assertions.md).
//
//     npm ci --prefix examples      # jose, pinned in examples/package.json
//     node examples/verify_assertion.mjs http://fluxgate.internal:8080/.well-known/jwks.json "$ASSERTION" api.example.com
//
// Prints the claims as JSON, or exits 1 saying why the assertion is refused.
// tests/it/assertion_jwks.rs runs this script against a live fluxgate.
import { pathToFileURL } from "node:url";
import { createRemoteJWKSet, errors, jwtVerify } from "jose";

// One key set per JWKS URL and process: jose caches the keys and fetches the set again when an
// assertion names a kid it has not seen (fluxgate publishes a key before it signs with it).
const sets = new Map();

export async function verify(jwksUrl, token, host) {
  let keys = sets.get(jwksUrl);
  if (!keys) {
    keys = createRemoteJWKSet(new URL(jwksUrl), { cacheMaxAge: 300_000 });
    sets.set(jwksUrl, keys);
  }
  const { payload } = await jwtVerify(token, keys, {
    // Only the asymmetric algorithms: never let the token choose HS256 (or "none").
    algorithms: ["ES256", "EdDSA"],
    issuer: "fluxgate",
    requiredClaims: ["exp", "iat", "iss"],
    clockTolerance: 5,
  });
  if (payload.host !== host) {
    throw new errors.JWTClaimValidationFailed(
      `assertion for host ${JSON.stringify(payload.host)}, not ${JSON.stringify(host)}`,
      payload,
      "host",
      "check_failed",
    );
  }
  // payload.jti is unique per assertion: remember it until payload.exp to refuse a replay.
  return payload;
}

function sorted(value) {
  if (Array.isArray(value)) return value.map(sorted);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sorted(value[k])]),
    );
  }
  return value;
}

async function main(args) {
  if (args.length !== 3) {
    console.error("usage: verify_assertion.mjs <jwks-url> <assertion> <host>");
    return 2;
  }
  try {
    const claims = await verify(...args);
    console.log(JSON.stringify(sorted(claims)));
    return 0;
  } catch (e) {
    if (e instanceof errors.JOSEError) {
      console.error(`refused: ${e.code}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

// Run as a script (not imported as a module).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
