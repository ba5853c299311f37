//! The command line: every command and option (clap derive). Region, profile and endpoints
//! follow the AWS CLI: `--region` / `--profile` / `--endpoint-url` override the standard
//! environment (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_LAMBDA`, …).

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kms-jwt's operator command line: the keyring's state, what rotate will do and when, and the
/// acting commands (through the deployed rotate function, so its IAM, audit and fencing apply).
#[derive(Debug, Parser)]
#[command(name = "kms-jwt", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// AWS Region (default: the standard chain, as the AWS CLI: AWS_REGION, the profile).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Endpoint of every AWS service (LocalStack: http://127.0.0.1:4566); default AWS_ENDPOINT_URL.
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
    /// Endpoint of the Lambda API only (`cargo lambda watch`: http://127.0.0.1:9000).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL_LAMBDA")]
    pub lambda_endpoint_url: Option<String>,
    /// The deployed rotate function (name or ARN): the acting commands invoke it, and its
    /// configuration is read with GetFunctionConfiguration (`aws cloudformation
    /// describe-stack-resource --stack-name STACK --logical-resource-id RotateFunction`).
    #[arg(long, global = true, env = "KMS_JWT_ROTATE_FUNCTION")]
    pub function_name: Option<String>,
    /// Read rotate's settings (KEYRING_SECRET_ID, ROTATION_PERIOD, …) from this process's
    /// environment instead of the function's configuration (local runs, LocalStack).
    #[arg(long, global = true)]
    pub config_from_env: bool,
    /// The keyring secret (default: rotate's KEYRING_SECRET_ID).
    #[arg(long, global = true)]
    pub secret_id: Option<String>,
    /// The issuer (default: ISSUER of the environment with --config-from-env).
    #[arg(long, global = true)]
    pub issuer: Option<String>,
    /// Machine-readable output: one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Colour: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Every key, what comes next and when, held rotations, queues, regions. Exits 1 when
    /// something needs attention.
    Status,
    /// What the reconciler would do now and at the next transitions (no write).
    Plan {
        /// How many scheduled runs to show.
        #[arg(long, default_value_t = 4)]
        next: usize,
    },
    /// Rotate now (through the rotate function): the next key becomes current.
    Rotate {
        /// Rotate before the next key's pre-publication is over (tokens of the new key may be
        /// refused by verifiers that hold an older JWKS).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Run a reconciliation now (what the hourly schedule does), through the rotate function.
    Reconcile {
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Withdraw a compromised key from the JWKS at once, then disable it in KMS.
    Revoke {
        /// The key's kid.
        kid: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Multi-region fail-over: make this region the keyring's home.
    TakeOver {
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Verify a token against the issuer's discovery and JWKS; say which verifiers accept it.
    Verify {
        /// The JWT.
        token: String,
        /// Check `aud` too.
        #[arg(long)]
        audience: Option<String>,
    },
    /// Check a deployment end to end; print each finding with its fix.
    Doctor {
        /// The jwks function, whose settings must agree with rotate's (pre-publication).
        #[arg(long)]
        jwks_function: Option<String>,
        /// The sign function, whose settings must agree with rotate's (retirement).
        #[arg(long)]
        sign_function: Option<String>,
    },
    /// The JWKS verifiers hold now against the one after the next transition.
    Jwks {
        #[command(subcommand)]
        command: JwksCmd,
    },
}

#[derive(Debug, Subcommand)]
pub enum JwksCmd {
    /// What verifiers hold now versus after the next transition.
    Diff,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct Confirm {
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kms-jwt").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&["status", "--region", "eu-west-1", "--json", "--profile", "ops"]).unwrap();
        assert_eq!(cli.global.region.as_deref(), Some("eu-west-1"));
        assert_eq!(cli.global.profile.as_deref(), Some("ops"));
        assert!(cli.global.json);
        assert!(matches!(cli.command, Cmd::Status));
        let cli = parse(&["--endpoint-url", "http://127.0.0.1:4566", "plan", "--next", "2"]).unwrap();
        assert_eq!(cli.global.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
        assert!(matches!(cli.command, Cmd::Plan { next: 2 }));
    }

    #[test]
    fn acting_commands_take_yes() {
        let cli = parse(&["revoke", "abc", "--yes"]).unwrap();
        assert!(
            matches!(cli.command, Cmd::Revoke { ref kid, confirm: Confirm { yes: true } } if kid == "abc")
        );
        let cli = parse(&["rotate", "--force", "-y"]).unwrap();
        assert!(matches!(cli.command, Cmd::Rotate { force: true, confirm: Confirm { yes: true } }));
        assert!(matches!(
            parse(&["reconcile", "--yes"]).unwrap().command,
            Cmd::Reconcile { confirm: Confirm { yes: true } }
        ));
        let cli = parse(&["take-over"]).unwrap();
        assert!(matches!(cli.command, Cmd::TakeOver { confirm: Confirm { yes: false } }));
        assert!(matches!(parse(&["jwks", "diff"]).unwrap().command, Cmd::Jwks { command: JwksCmd::Diff }));
    }

    #[test]
    fn bad_input_is_a_usage_error_exiting_2() {
        for bad in [&["revoke"][..], &["explode"], &["status", "--color", "purple"], &["verify"]] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }
}
