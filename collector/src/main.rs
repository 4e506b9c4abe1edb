//! `collector`: Okta System Log → Azure Storage (see the crate docs and README).

use std::process::ExitCode;

use clap::Parser;
use collector::config::{Cli, Command};
use common::storage::Storage;

fn main() -> ExitCode {
    common::memory::limit_malloc_arenas();
    let cli = Cli::parse();
    common::telemetry::init(cli.args.service.log_format, "collector");
    if let Err(e) = common::failpoint::validate_env() {
        eprintln!("collector: {e}");
        return ExitCode::from(2);
    }
    let cfg = match cli.args.validate(chrono::Utc::now()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration error: {e}");
            eprintln!("collector: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("collector: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => collector::run::run(cfg).await,
            Command::Status { json } => {
                let storage = connect(&cfg).await?;
                collector::commands::status(&cfg, &storage, json).await
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
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(cfg: &collector::config::CollectorConfig) -> anyhow::Result<Storage> {
    let w = collector::wiring::Wiring::new(cfg).await?;
    Ok(Storage::connect(
        &cfg.storage,
        w.azure_http.clone(),
        w.credential.clone(),
    )?)
}
