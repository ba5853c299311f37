#!/usr/bin/env node
// Verify one kms-jwt token the way a Node consumer does: with `aws-jwt-verify` or with `jose`,
// fetching the JWKS from a URL over HTTP. The Rust tests (tests/src/node.rs) run this once
// per check.
//
// Request, one JSON object on stdin:
//   {"verifier": "aws-jwt-verify" | "jose", "token": "...", "jwksUri": "http://127.0.0.1:PORT/...",
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
if (!["aws-jwt-verify", "jose"].includes(verifier)) fail(`unknown verifier ${JSON.stringify(verifier)}`);
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

let answer;
try {
  const payload = verifier === "jose" ? await withJose() : await withAwsJwtVerify();
  answer = { ok: true, payload };
} catch (err) {
  // aws-jwt-verify's error classes do not set `name`; the constructor's name is the class.
  const name = err?.constructor?.name ?? "Error";
  answer = { ok: false, error: `${name}: ${err?.message ?? String(err)}` };
}
process.stdout.write(`${JSON.stringify(answer)}\n`);
