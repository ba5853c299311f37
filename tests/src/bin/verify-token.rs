//! `verify-token --jwks-url URL --issuer ISS TOKEN...`: fetch a JWKS over HTTP and verify each
//! token against it, as a consumer would. Prints the kid and claims; exits 1 if any fails.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut jwks_url, mut issuer, mut tokens) = (None, None, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--jwks-url" => jwks_url = args.next(),
            "--issuer" => issuer = args.next(),
            _ => tokens.push(arg),
        }
    }
    let (Some(jwks_url), Some(issuer)) = (jwks_url, issuer) else {
        eprintln!("usage: verify-token --jwks-url URL --issuer ISSUER TOKEN...");
        return ExitCode::from(2);
    };
    let jwks = match fetch(&jwks_url).await {
        Ok(body) => body,
        Err(e) => {
            eprintln!("could not fetch {jwks_url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    for token in &tokens {
        let kid = kms_jwt_tests::header_kid(token).unwrap_or_else(|| "?".into());
        match kms_jwt_tests::verify(token, &jwks, &issuer) {
            Ok(claims) => println!("  VALID    kid={kid} claims={claims}"),
            Err(e) => {
                println!("  INVALID  kid={kid}: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn fetch(url: &str) -> Result<String, reqwest::Error> {
    reqwest::get(url).await?.error_for_status()?.text().await
}
