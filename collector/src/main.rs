//! `collector`: Okta System Log → Azure Storage (see the crate docs and README).

use std::process::ExitCode;

use clap::Parser;
use collector::config::{Cli, Command};
use common::storage::Storage;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match common::service::boot("collector", cli.args.service.log_format) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let cfg = match cli.args.validate(chrono::Utc::now()) {
        Ok(c) => c,
        Err(e) => return common::service::config_failed("collector", &e),
    };
    let result = rt.block_on(async move {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => collector::run::run(cfg, common::shutdown::install()).await,
            Command::Status { json } => {
                let storage = connect(&cfg).await?;
                collector::commands::status(&cfg, &storage, json).await
            }
            Command::Doctor => collector::doctor::command(&cfg).await,
            Command::Audit { from, to, json } => {
                collector::audit::command::run(&cfg, &from, &to, json).await
            }
            Command::Reset {
                start,
                next_url,
                yes,
            } => {
                let storage = connect(&cfg).await?;
                collector::commands::reset(
                    &cfg,
                    &storage,
                    start.as_deref(),
                    next_url.as_deref(),
                    yes,
                )
                .await
            }
        }
    });
    if let Err(e) = &result {
        if let Some(i) = e.downcast_ref::<collector::audit::command::Incomplete>() {
            eprintln!("collector: {i}");
            return ExitCode::from(collector::audit::command::INCOMPLETE_EXIT);
        }
    }
    common::service::finish("collector", result)
}

async fn connect(cfg: &collector::config::CollectorConfig) -> anyhow::Result<Storage> {
    let w = collector::wiring::Wiring::new(cfg).await?;
    Ok(Storage::connect(
        &cfg.storage,
        w.azure_http.clone(),
        w.credential.clone(),
    )?)
}
