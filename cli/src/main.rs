//! `kms-jwt`: the operator's command line. Parse, run one command, map its outcome to an exit
//! code (0 fine, 1 needs attention or failed, 2 bad input); the work is in the modules.

mod args;
mod aws;
mod commands;
mod error;
mod render;
mod verifiers;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Cmd, JwksCmd};
use commands::act::Act;
use commands::Deployment;
use error::{CliError, Outcome, EXIT_ATTENTION};
use render::Style;

async fn run(cli: Cli, style: Style) -> Result<Outcome, CliError> {
    let json = cli.global.json;
    if let Cmd::Verify { token, audience } = &cli.command {
        let issuer = cli
            .global
            .issuer
            .clone()
            .or_else(|| cli.global.config_from_env.then(|| std::env::var("ISSUER").ok()).flatten());
        return commands::verify::run(issuer.as_deref(), token, audience.as_deref(), json, style).await;
    }
    let d = Deployment::load(&cli.global).await?;
    match cli.command {
        Cmd::Status => commands::status::run(&d, json, style).await,
        Cmd::Plan { next } => commands::plan::run(&d, next, json, style).await,
        Cmd::Rotate { force, confirm } => {
            commands::act::run(&d, Act::Rotate { force }, confirm.yes, json, style).await
        }
        Cmd::Reconcile { confirm } => commands::act::run(&d, Act::Reconcile, confirm.yes, json, style).await,
        Cmd::Revoke { kid, confirm } => {
            commands::act::run(&d, Act::Revoke { kid }, confirm.yes, json, style).await
        }
        Cmd::TakeOver { confirm } => commands::act::run(&d, Act::TakeOver, confirm.yes, json, style).await,
        Cmd::Doctor { jwks_function, sign_function } => {
            commands::doctor::run(&d, jwks_function.as_deref(), sign_function.as_deref(), json, style).await
        }
        Cmd::Jwks { command: JwksCmd::Diff } => commands::jwks::run(&d, json, style).await,
        Cmd::Verify { .. } => Ok(Outcome::Fine),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let style = Style::decide(
        cli.global.color,
        std::io::stdout().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    );
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kms-jwt: cannot start: {e}");
            return ExitCode::from(EXIT_ATTENTION);
        }
    };
    match runtime.block_on(run(cli, style)) {
        Ok(Outcome::Fine) => ExitCode::SUCCESS,
        Ok(Outcome::NeedsAttention) => ExitCode::from(EXIT_ATTENTION),
        Err(e) => {
            let err_style = Style::decide(
                args::ColorWhen::Auto,
                std::io::stderr().is_terminal(),
                std::env::var("NO_COLOR").ok().as_deref(),
            );
            eprintln!("{} {e}", err_style.paint(render::Tone::Bad, "error:"));
            ExitCode::from(e.exit_code())
        }
    }
}
