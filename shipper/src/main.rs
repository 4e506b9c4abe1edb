//! `shipper`: queue → Log Analytics (see the crate docs and README).

use std::process::ExitCode;

use clap::Parser;
use common::storage::Storage;
use shipper::config::{Cli, Command, PoisonAction};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match common::service::boot("shipper", cli.args.service.log_format) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let command = cli.command.unwrap_or(Command::Run);
    let is_run = matches!(command, Command::Run | Command::Doctor);
    let cfg = match cli.args.validate(is_run) {
        Ok(c) => c,
        Err(e) => return common::service::config_failed("shipper", &e),
    };
    let result = rt.block_on(async move {
        match command {
            Command::Run => shipper::run::run(cfg).await,
            Command::Doctor => shipper::doctor::command(&cfg).await,
            Command::Poison { action } => {
                let w = shipper::wiring::Clients::new(&cfg, shipper::sinks::SinkMetrics::default())
                    .await?;
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
    common::service::finish("shipper", result)
}
