//! In-process hot paths: token assembly (without the KMS call), a warm JWKS request and its
//! 304, keyring parsing, and verification throughput against our JWKS next to the raw
//! signature-verify ceiling (ES256 and RS256). `cargo bench -p kms-jwt-tests --bench hot_paths`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kms_jwt::config::JwksConfig;
use kms_jwt::jwk::PublicJwk;
use kms_jwt::jwks::{respond, JwksService, PublishedKeys, Site, JWKS_PATH};
use kms_jwt::jws::{self, Header};
use kms_jwt::keyring::{Keyring, NewKey};
use kms_jwt::memory::MemoryStore;
use kms_jwt::SigningAlg;
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use lambda_http::request::LambdaRequest;
use lambda_http::Service;

/// An ES256 key pair and its JWK, from aws-lc-rs (the backend jsonwebtoken uses here).
fn es256_key() -> (EcdsaKeyPair, PublicJwk) {
    let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = pair.public_key().as_ref().to_vec(); // 0x04 || X || Y
    let jwk = PublicJwk::Ec {
        crv: "P-256".into(),
        x: URL_SAFE_NO_PAD.encode(&point[1..33]),
        y: URL_SAFE_NO_PAD.encode(&point[33..65]),
    };
    (pair, jwk)
}

fn new_key(jwk: PublicJwk, n: u32) -> NewKey {
    NewKey {
        kid: jwk.thumbprint(),
        alg: SigningAlg::ES256,
        kms_key_arn: format!("arn:aws:kms:us-east-1:000000000000:key/{n}"),
        public_jwk: jwk,
        created_at: 0,
    }
}

fn keyring() -> Keyring {
    let (_, a) = es256_key();
    let (_, b) = es256_key();
    let (_, c) = es256_key();
    Keyring::empty().bootstrap(new_key(a, 1), new_key(b, 2), 0).rotate(new_key(c, 3), 10)
}

fn bench(c: &mut Criterion) {
    // Token assembly as the signer does it, minus the KMS round trip: header and claims,
    // base64url, SHA-256 digest, DER → R||S of a realistic KMS signature.
    let claims = serde_json::json!({"sub": "user-123", "aud": "https://api.example.com", "scope": "orders:read",
        "iss": "https://issuer.example.com", "iat": 1_795_600_000, "nbf": 1_795_600_000, "exp": 1_795_600_900,
        "jti": "c0ffee00-0000-4000-8000-000000000000"});
    let der_signature = {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        pair.sign(&SystemRandom::new(), b"x").unwrap().as_ref().to_vec()
    };
    c.bench_function("token_assembly_es256_without_kms", |b| {
        b.iter(|| {
            let payload = serde_json::to_vec(black_box(&claims)).unwrap();
            let header = Header {
                alg: SigningAlg::ES256,
                kid: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
                typ: "JWT",
            };
            let input = jws::signing_input(&header, &payload).unwrap();
            let digest = SigningAlg::ES256.hash().digest(input.as_bytes());
            black_box(&digest);
            let raw = jws::jose_signature(SigningAlg::ES256, black_box(&der_signature)).unwrap();
            black_box(jws::compact(input, &raw))
        })
    });

    // A warm JWKS request: the cached rendering is answered as is.
    let site = Site::new("https://issuer.example.com", None, Duration::from_secs(300));
    let ring = keyring();
    let keys = PublishedKeys::render(&site, &ring);
    let etag = keys.jwks.etag.clone();
    c.bench_function("jwks_warm_request_200", |b| {
        b.iter(|| black_box(respond(&site, "GET", JWKS_PATH, None, Some(&keys))))
    });
    c.bench_function("jwks_warm_request_304", |b| {
        b.iter(|| black_box(respond(&site, "GET", JWKS_PATH, Some(&etag), Some(&keys))))
    });

    // The same, as the Lambda runtime runs it: the API Gateway HTTP API event JSON in, through
    // lambda_http's adapter and the jwks function's handler, the response JSON out.
    let config = JwksConfig::from_lookup(|name| match name {
        "KEYRING_SECRET_ID" => Some("kms-jwt/bench".into()),
        "ISSUER" => Some("https://issuer.example.com".into()),
        _ => None,
    })
    .unwrap();
    let service = JwksService::from_config(MemoryStore::with_document(&ring.to_json()), &config);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let event: serde_json::Value =
        serde_json::from_str(include_str!("../../events/jwks-http-api.json")).unwrap();
    let plain = serde_json::to_vec(&event).unwrap();
    let etag = runtime.block_on(service.answer("GET", JWKS_PATH, None)).header("etag").unwrap().to_owned();
    let mut conditional = event.clone();
    conditional["headers"]["if-none-match"] = etag.into();
    let conditional = serde_json::to_vec(&conditional).unwrap();
    let mut adapter = lambda_http::Adapter::from(lambda_http::service_fn(|request| {
        kms_jwt_jwks::handle(&service, request)
    }));
    let mut invoke = |event: &[u8]| {
        let request: LambdaRequest = serde_json::from_slice(event).unwrap();
        let response = runtime.block_on(adapter.call(LambdaEvent::new(request, Context::default()))).unwrap();
        serde_json::to_vec(&response).unwrap()
    };
    assert!(String::from_utf8(invoke(&plain)).unwrap().contains(r#""statusCode":200"#));
    assert!(String::from_utf8(invoke(&conditional)).unwrap().contains(r#""statusCode":304"#));
    c.bench_function("jwks_lambda_invocation_200", |b| b.iter(|| black_box(invoke(black_box(&plain)))));
    c.bench_function("jwks_lambda_invocation_304", |b| b.iter(|| black_box(invoke(black_box(&conditional)))));

    // Parsing and validating a stored keyring (once per keyring version per container).
    let text = ring.to_json();
    c.bench_function("keyring_parse_3_keys", |b| {
        b.iter(|| black_box(Keyring::from_json(black_box(&text)).unwrap()))
    });

    // Verification throughput against our JWKS, next to the raw verify of the same algorithm.
    let (pair, jwk) = es256_key();
    let public = pair.public_key().as_ref().to_vec();
    verify_group(c, SigningAlg::ES256, &claims, jwk, &signature::ECDSA_P256_SHA256_FIXED, &public, |input| {
        pair.sign(&SystemRandom::new(), input).unwrap().as_ref().to_vec()
    });
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let jwk = PublicJwk::from_spki_der(rsa.public_key().as_der().unwrap().as_ref()).unwrap();
    let public = rsa.public_key().as_ref().to_vec(); // PKCS#1 RSAPublicKey
    verify_group(
        c,
        SigningAlg::RS256,
        &claims,
        jwk,
        &signature::RSA_PKCS1_2048_8192_SHA256,
        &public,
        |input| {
            let mut sig = vec![0; rsa.public_modulus_len()];
            rsa.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), input, &mut sig).unwrap();
            sig
        },
    );
}

/// `jsonwebtoken::decode` of one of our tokens with a `DecodingKey` made from our JWKS (as a
/// consumer caches it), and the raw signature verify of the same signing input: the ceiling.
fn verify_group(
    c: &mut Criterion,
    alg: SigningAlg,
    claims: &serde_json::Value,
    jwk: PublicJwk,
    raw_alg: &'static dyn signature::VerificationAlgorithm,
    public_key: &[u8],
    sign: impl Fn(&[u8]) -> Vec<u8>,
) {
    let kid = jwk.thumbprint();
    let header = Header { alg, kid: &kid, typ: "JWT" };
    let input = jws::signing_input(&header, &serde_json::to_vec(claims).unwrap()).unwrap();
    let sig = sign(input.as_bytes());
    let token = jws::compact(input.clone(), &sig);
    let set_json = serde_json::to_string(&kms_jwt::jwk::JwkSet {
        keys: vec![kms_jwt::jwk::PublishedJwk::signing_key(jwk, kid.clone(), alg)],
    })
    .unwrap();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&set_json).unwrap();
    let decoding = jsonwebtoken::DecodingKey::from_jwk(set.find(&kid).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(alg.as_str().parse().unwrap());
    validation.set_issuer(&["https://issuer.example.com"]);
    validation.validate_exp = false; // fixed claims; the cost of the check itself is negligible
    validation.validate_aud = false;
    let public = signature::UnparsedPublicKey::new(raw_alg, public_key.to_vec());
    public.verify(input.as_bytes(), &sig).unwrap();

    let mut group = c.benchmark_group(format!("verify_{}", alg.as_str().to_lowercase()));
    group.throughput(Throughput::Elements(1));
    group.bench_function("jsonwebtoken_against_our_jwks", |b| {
        b.iter(|| {
            black_box(
                jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &decoding, &validation).unwrap(),
            )
        })
    });
    group.bench_function("raw_aws_lc_rs_verify", |b| {
        b.iter(|| public.verify(black_box(input.as_bytes()), black_box(&sig)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
