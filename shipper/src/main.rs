//! `shipper`: queue → Log Analytics (see the crate docs and README).

use std::process::ExitCode;

use clap::Parser;
use common::storage::Storage;
use shipper::config::{Cli, Command, PoisonAction};

fn main() -> ExitCode {
    common::memory::limit_malloc_arenas();
    let cli = Cli::parse();
    common::telemetry::init(cli.args.service.log_format, "shipper");
    if let Err(e) = common::failpoint::validate_env() {
        eprintln!("shipper: {e}");
        return ExitCode::from(2);
    }
    let command = cli.command.unwrap_or(Command::Run);
    let is_run = matches!(command, Command::Run);
    let cfg = match cli.args.validate(is_run) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration error: {e}");
            eprintln!("shipper: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shipper: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match command {
            Command::Run => shipper::run::run(cfg).await,
            Command::Poison { action } => {
                let w = shipper::wiring::Wiring::new(&cfg, false).await?;
                let storage =
                    Storage::connect(&cfg.storage, w.azure_http.clone(), w.credential.clone())?;
                match action {
                    PoisonAction::List { json } => shipper::poison::list(&storage, json).await,
                    PoisonAction::Show { id } => shipper::poison::show(&storage, &id).await,
                    PoisonAction::Requeue { ids, all } => {
                        shipper::poison::requeue(&storage, &ids, all).await
                    }
                    PoisonAction::Purge { older_than, yes } => {
                        let d = match older_than.as_deref() {
                            Some(s) => Some(common::config::parse_duration("--older-than", s)?),
                            None => None,
                        };
                        shipper::poison::purge(&storage, d, yes).await
                    }
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("shipper: {e:#}");
            ExitCode::FAILURE
        }
    }
}
