#!/usr/bin/env node
// Verify one kms-jwt token the way a Node consumer does: with `aws-jwt-verify` or with `jose`,
// fetching the JWKS from a URL over HTTP; or, for the algorithms neither implements on Node 20
// (ES256K; ML-DSA, which jose runs only where WebCrypto has it, Node 24.7+), with `noble`: a
// JWS check written here on the audited @noble/curves (secp256k1, ed25519) and
// @noble/post-quantum (ML-DSA, FIPS 204) primitives. The Rust tests (tests/src/node.rs) run this
// once per check.
//
// Request, one JSON object on stdin:
//   {"verifier": "aws-jwt-verify" | "jose" | "noble", "token": "...", "jwksUri": "http://127.0.0.1:PORT/...",
//    "issuer": "...", "audience": null | "...", "alg": "RS256" | null}
// Answer, one JSON line on stdout, exit status 0:
//   {"ok": true, "payload": {...}}  or  {"ok": false, "error": "<ErrorClassName>: message"}
// A request that cannot be understood exits 2 with a message on stderr.
//
// `alg` pins the algorithm, as a consumer should: jose's `algorithms` option; aws-jwt-verify
// has no such option, so a `customJwtCheck` compares the header's alg (the library itself
// already requires the header alg to equal the JWK's alg).
//
// Plain http:// JWKS URLs. aws-jwt-verify's default fetcher (dist/esm/https-node.js) calls
// Node's `https.request`, which refuses an http: URL (TypeError ERR_INVALID_PROTOCOL,
// "Protocol "http:" not supported"). The tests serve the JWKS over plain HTTP on loopback, so
// aws-jwt-verify gets a custom fetcher through its documented extension point: a
// `SimpleJwksCache({ fetcher })` passed to `JwtVerifier.create(..., { jwksCache })`. The
// fetcher uses Node's global fetch, is limited to loopback hosts, answers only a 200 (like the
// library's own fetcher) and follows no redirect. The rest of the library (JWKS parsing, kid
// lookup, penalty box, signature and claim checks) is unchanged. jose's createRemoteJWKSet
// uses the global fetch and accepts http: URLs as they are.
import { readFileSync } from "node:fs";

import { JwtVerifier } from "aws-jwt-verify";
import { SimpleJwksCache } from "aws-jwt-verify/jwk";
import { NonRetryableFetchError, FetchError, JwtInvalidSignatureAlgorithmError } from "aws-jwt-verify/error";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { ed25519 } from "@noble/curves/ed25519.js";
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { ml_dsa44, ml_dsa65, ml_dsa87 } from "@noble/post-quantum/ml-dsa.js";

const FETCH_TIMEOUT_MS = 5000;
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

function fail(message) {
  process.stderr.write(`verify.mjs: ${message}\n`);
  process.exit(2);
}

let request;
try {
  request = JSON.parse(readFileSync(0, "utf8"));
} catch (err) {
  fail(`the request on stdin is not JSON: ${err.message}`);
}
const { verifier, token, jwksUri, issuer, audience = null, alg = null } = request ?? {};
if (!["aws-jwt-verify", "jose", "noble"].includes(verifier)) fail(`unknown verifier ${JSON.stringify(verifier)}`);
for (const [name, value] of Object.entries({ token, jwksUri, issuer })) {
  if (typeof value !== "string" || value === "") fail(`${name} must be a non-empty string`);
}
if (audience !== null && typeof audience !== "string") fail("audience must be null or a string");
if (alg !== null && typeof alg !== "string") fail("alg must be null or a string");
let url;
try {
  url = new URL(jwksUri);
} catch {
  fail(`jwksUri is not a URL: ${jwksUri}`);
}

/** aws-jwt-verify's fetcher interface: fetch(uri) resolves to the body as an ArrayBuffer. */
const loopbackHttpFetcher = {
  async fetch(uri) {
    const target = new URL(uri);
    if (target.protocol !== "http:" || !LOOPBACK.has(target.hostname)) {
      throw new NonRetryableFetchError(uri, "this test fetcher only fetches http:// on loopback");
    }
    let response;
    try {
      response = await fetch(target, { redirect: "error", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    } catch (err) {
      throw new FetchError(uri, err.message);
    }
    if (response.status !== 200) {
      throw new NonRetryableFetchError(uri, `Status code is ${response.status}, expected 200`);
    }
    return response.arrayBuffer();
  },
};

async function withAwsJwtVerify() {
  const jwtVerifier = JwtVerifier.create(
    {
      issuer,
      audience,
      jwksUri,
      customJwtCheck: ({ header }) => {
        if (alg !== null && header.alg !== alg) {
          throw new JwtInvalidSignatureAlgorithmError(`JWT alg ${header.alg} is not the pinned ${alg}`, header.alg, alg);
        }
      },
    },
    { jwksCache: new SimpleJwksCache({ fetcher: loopbackHttpFetcher }) },
  );
  return jwtVerifier.verify(token);
}

async function withJose() {
  const jwks = createRemoteJWKSet(url, { timeoutDuration: FETCH_TIMEOUT_MS });
  const { payload } = await jwtVerify(token, jwks, {
    issuer,
    ...(audience === null ? {} : { audience }),
    ...(alg === null ? {} : { algorithms: [alg] }),
  });
  return payload;
}

// The noble verifier's refusals, one class each, so the tests can tell them apart.
class NobleParseError extends Error {}
class NobleKidNotFound extends Error {}
class NobleAlgorithmMismatch extends Error {}
class NobleSignatureInvalid extends Error {}
class NobleClaimInvalid extends Error {}

function base64url(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text)) throw new NobleParseError("not base64url");
  return new Uint8Array(Buffer.from(text, "base64url"));
}

/** Signature check by JWS algorithm (RFC 8812, RFC 8037 / RFC 9864, RFC 9964), over the JWK's own members. */
const NOBLE = {
  // ECDSA over SHA-256(input); noble also insists on low S (kms-jwt always emits it).
  ES256K: (jwk, sig, input) => {
    if (jwk.kty !== "EC" || jwk.crv !== "secp256k1") throw new NobleAlgorithmMismatch("not a secp256k1 key");
    const point = new Uint8Array([4, ...base64url(jwk.x), ...base64url(jwk.y)]);
    return secp256k1.verify(sig, input, point);
  },
  EdDSA: (jwk, sig, input) => {
    if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519") throw new NobleAlgorithmMismatch("not an Ed25519 key");
    return ed25519.verify(sig, input, base64url(jwk.x));
  },
  // Pure ML-DSA, empty context (RFC 9964 §5).
  "ML-DSA-44": (jwk, sig, input) => ml_dsa44.verify(sig, input, base64url(jwk.pub)),
  "ML-DSA-65": (jwk, sig, input) => ml_dsa65.verify(sig, input, base64url(jwk.pub)),
  "ML-DSA-87": (jwk, sig, input) => ml_dsa87.verify(sig, input, base64url(jwk.pub)),
};
NOBLE.Ed25519 = NOBLE.EdDSA;

async function withNoble() {
  const parts = token.split(".");
  if (parts.length !== 3) throw new NobleParseError("a compact JWS has three parts");
  let header, payload;
  try {
    header = JSON.parse(Buffer.from(base64url(parts[0])).toString("utf8"));
    payload = JSON.parse(Buffer.from(base64url(parts[1])).toString("utf8"));
  } catch (err) {
    throw new NobleParseError(`header or payload is not JSON: ${err.message}`);
  }
  if (alg !== null && header.alg !== alg) throw new NobleAlgorithmMismatch(`JWT alg ${header.alg} is not the pinned ${alg}`);
  const check = NOBLE[header.alg];
  if (!check) throw new NobleAlgorithmMismatch(`alg ${header.alg} is not implemented here`);
  const response = await fetch(url, { redirect: "error", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  if (response.status !== 200) throw new Error(`JWKS answered ${response.status}`);
  const jwks = await response.json();
  const jwk = (jwks.keys ?? []).find((key) => key.kid === header.kid);
  if (!jwk) throw new NobleKidNotFound(`kid ${header.kid} is not in the JWKS`);
  // The key decides the algorithm; the header must agree with it.
  if (jwk.alg !== header.alg) throw new NobleAlgorithmMismatch(`JWK alg ${jwk.alg}, JWT alg ${header.alg}`);
  const input = new TextEncoder().encode(`${parts[0]}.${parts[1]}`);
  let valid;
  try {
    valid = check(jwk, base64url(parts[2]), input);
  } catch (err) {
    if (err instanceof NobleAlgorithmMismatch) throw err;
    valid = false;
  }
  if (!valid) throw new NobleSignatureInvalid("signature does not verify");
  const now = Math.floor(Date.now() / 1000);
  if (payload.iss !== issuer) throw new NobleClaimInvalid(`iss ${payload.iss} is not ${issuer}`);
  if (audience !== null && ![payload.aud].flat().includes(audience)) throw new NobleClaimInvalid("aud mismatch");
  if (typeof payload.exp !== "number" || payload.exp <= now) throw new NobleClaimInvalid("expired or no exp");
  if (payload.nbf !== undefined && !(typeof payload.nbf === "number" && payload.nbf <= now)) {
    throw new NobleClaimInvalid("not yet valid");
  }
  return payload;
}

let answer;
try {
  const verifiers = { jose: withJose, noble: withNoble, "aws-jwt-verify": withAwsJwtVerify };
  const payload = await verifiers[verifier]();
  answer = { ok: true, payload };
} catch (err) {
  // aws-jwt-verify's error classes do not set `name`; the constructor's name is the class.
  const name = err?.constructor?.name ?? "Error";
  answer = { ok: false, error: `${name}: ${err?.message ?? String(err)}` };
}
process.stdout.write(`${JSON.stringify(answer)}\n`);
