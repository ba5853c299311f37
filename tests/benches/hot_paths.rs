//! In-process hot paths: token assembly (without the KMS call), a warm JWKS request and its
//! 304, keyring parsing, and verification throughput against our JWKS next to the raw
//! signature-verify ceiling (ES256 and RS256). `cargo bench -p kms-jwt-tests --bench hot_paths`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kms_jwt::config::JwksConfig;
use kms_jwt::jose::jwk::PublicJwk;
use kms_jwt::jose::jws::{self, Header};
use kms_jwt::jwks::{respond, PublishedKeys, Site, JWKS_PATH};
use kms_jwt::keyring::{Keyring, NewKey};
use kms_jwt::memory::MemoryStore;
use kms_jwt::SigningAlg;
use kms_jwt_tests::bench::verify::{typical_claims, VerifyCase};
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
    let claims = typical_claims();
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
            let digest = SigningAlg::ES256.hash().unwrap().digest(input.as_bytes());
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
        b.iter(|| black_box(respond(&site, "GET", JWKS_PATH, None, Some(&keys), 0)))
    });
    c.bench_function("jwks_warm_request_304", |b| {
        b.iter(|| black_box(respond(&site, "GET", JWKS_PATH, Some(&etag), Some(&keys), 0)))
    });

    // The same, as the Lambda runtime runs it: the API Gateway HTTP API event JSON in, through
    // lambda_http's adapter and the jwks function's handler, the response JSON out.
    let config = JwksConfig::from_lookup(|name| match name {
        "KEYRING_SECRET_ID" => Some("kms-jwt/bench".into()),
        "ISSUER" => Some("https://issuer.example.com".into()),
        _ => None,
    })
    .unwrap();
    let service = config.jwks_service(MemoryStore::with_document(&ring.to_json()));
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
    c.bench_function("jwks_lambda_event_decode", |b| {
        b.iter(|| black_box(serde_json::from_slice::<LambdaRequest>(black_box(&plain)).unwrap()))
    });
    c.bench_function("jwks_lambda_invocation_200", |b| b.iter(|| black_box(invoke(black_box(&plain)))));
    c.bench_function("jwks_lambda_invocation_304", |b| b.iter(|| black_box(invoke(black_box(&conditional)))));

    // Parsing and validating a stored keyring (once per keyring version per container).
    let text = ring.to_json();
    c.bench_function("keyring_parse_3_keys", |b| {
        b.iter(|| black_box(Keyring::from_json(black_box(&text)).unwrap()))
    });

    // Verification throughput against our JWKS, next to the raw verify of the same algorithm.
    for alg in [SigningAlg::ES256, SigningAlg::RS256] {
        let case = VerifyCase::new(alg).unwrap();
        let mut group = c.benchmark_group(format!("verify_{}", alg.as_str().to_lowercase()));
        group.throughput(Throughput::Elements(1));
        group.bench_function("jsonwebtoken_against_our_jwks", |b| {
            b.iter(|| black_box(case.jsonwebtoken(black_box(&case.token)).unwrap()))
        });
        group.bench_function("jsonwebtoken_minimal_token", |b| {
            b.iter(|| black_box(case.jsonwebtoken(black_box(&case.minimal_token)).unwrap()))
        });
        group.bench_function("raw_aws_lc_rs_verify", |b| b.iter(|| case.raw().unwrap()));
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
