//! `migrd download` (and `migrate -d`): fetch the balenaOS image for the
//! fleet's device type into the work dir, and verify it.

use super::migrate_args::MigrateArgs;
use crate::balena_api::{download, versions, Client};
use crate::inputs::config_json::ConfigJson;
use crate::inputs::image_check::{self, ImageInfo};
use crate::probe::device_types;
use anyhow::Context;
use clap::Args;
use std::time::Duration;

/// Arguments of `migrd download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Same flags as `migrd migrate`; `-c`, `-v`, `-w`, `--change-dt-to` matter here.
    #[command(flatten)]
    pub migrate: MigrateArgs,
}

/// Download the image the arguments ask for; returns it validated.
pub fn download_image(a: &MigrateArgs, opts: &download::Options) -> anyhow::Result<ImageInfo> {
    let path = a.config.as_ref().context(
        "downloading needs the fleet's config.json (-c) for the API endpoint, key and device type",
    )?;
    let cfg = ConfigJson::read(path)?;
    let slug = a
        .change_dt_to
        .clone()
        .unwrap_or_else(|| cfg.device_type.clone());
    let client = Client::new(
        &cfg.api_endpoint,
        cfg.api_key.clone(),
        Duration::from_secs(a.check_timeout.max(1)),
    )?;
    let list = client.versions(&slug)?;
    let version = versions::select(&list, &a.version, &slug)?;
    let raw = match client.is_flasher(&slug) {
        Ok(f) => f,
        Err(e) => {
            log::warn!("cannot read the {slug} contract ({e}); using migrd's table");
            device_types::slug_is_flasher(&slug)
        }
    };
    log::info!(
        "downloading balenaOS {version} for {slug}{}",
        if raw {
            " (raw image of a flasher type)"
        } else {
            ""
        }
    );
    let req = download::Request {
        slug: slug.clone(),
        version,
        raw,
    };
    let file = download::download(&client, &req, &a.work_dir, opts)?;
    let info = image_check::inspect(&file)
        .with_context(|| format!("checking the downloaded {}", file.display()))?;
    if !info.is_balena() || info.flasher {
        anyhow::bail!(
            "the API returned {} which is not a raw balenaOS image (partitions: {:?}); not using it",
            file.display(),
            info.partitions.iter().filter_map(|p| p.id()).collect::<Vec<_>>()
        );
    }
    Ok(info)
}

/// Run `migrd download`.
pub fn run(a: DownloadArgs) -> anyhow::Result<()> {
    super::check::apply_log_level(&a.migrate);
    for n in a.migrate.ignored_notes() {
        log::info!("{n}");
    }
    let opts = download::Options {
        progress: !a.migrate.json,
        ..download::Options::default()
    };
    let file = download_image(&a.migrate, &opts)?.path;
    if a.migrate.json {
        println!("{}", serde_json::json!({ "image": file }));
    } else {
        println!("{}", file.display());
    }
    Ok(())
}
