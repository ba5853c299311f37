//! Instructions per verification, for a repeatable verify-vs-raw ratio on a noisy machine.
//! Run under callgrind, which counts instructions whatever else the machine does:
//!
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/.../examples/verify_cost <es256|rs256> <ours|typed|minimal|raw> <count> <key file>
//!
//! The key file (PKCS#8, made on first use; benchmark keys, nothing else) keeps the key the
//! same across runs, so `scripts/bench.sh` can run each mode with `count` and with 0 and
//! divide the difference: key loading and setup cancel out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use kms_jwt::SigningAlg;
use kms_jwt_tests::bench::verify::VerifyCase;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [alg, mode, count, key_file] = args.as_slice() else {
        eprintln!("usage: verify_cost <es256|rs256> <ours|typed|minimal|raw> <count> <key file>");
        std::process::exit(2);
    };
    let alg: SigningAlg = alg.to_uppercase().parse().unwrap();
    let count: usize = count.parse().unwrap();
    let case = match std::fs::read(key_file) {
        Ok(pkcs8) => VerifyCase::with_key(alg, Some(&pkcs8)).unwrap(),
        Err(_) => {
            let case = VerifyCase::new(alg).unwrap();
            std::fs::write(key_file, case.pkcs8()).unwrap();
            case
        }
    };
    for _ in 0..count {
        match mode.as_str() {
            "ours" => drop(black_box(case.jsonwebtoken(black_box(&case.token)).unwrap())),
            "typed" => drop(black_box(case.jsonwebtoken_typed(black_box(&case.token)).unwrap())),
            "minimal" => drop(black_box(case.jsonwebtoken(black_box(&case.minimal_token)).unwrap())),
            "raw" => case.raw().unwrap(),
            other => panic!("unknown mode {other}"),
        }
    }
}
