//! Gather every input for a migration without failing early: each piece is
//! a `Result` so `migrd check` reports all problems at once. Nothing is
//! written.

use super::backup::BackupSpec;
use super::config_json::ConfigJson;
use super::image_check::{self, ImageInfo};
use super::network::{self, NetworkSet, Selection};
use crate::probe::{rootfs, Facts};
use std::path::{Path, PathBuf};

/// What to gather.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `-c`.
    pub config: Option<PathBuf>,
    /// `-i`.
    pub image: Option<PathBuf>,
    /// `-v`.
    pub version: String,
    /// `--backup-cfg`.
    pub backup_cfg: Option<PathBuf>,
    /// Network selection.
    pub networks: Selection,
    /// `--no-keep-name`.
    pub no_keep_name: bool,
    /// `--change-dt-to`.
    pub change_dt_to: Option<String>,
}

/// Where the image comes from.
#[derive(Debug)]
pub enum ImageInput {
    /// `-i FILE`, decoded to its end and validated
    /// ([`image_check::inspect`]).
    Local(Result<Box<ImageInfo>, String>),
    /// To be downloaded: this version request.
    Download(String),
}

/// Everything gathered.
#[derive(Debug)]
pub struct Gathered {
    /// config.json, if one was given or found.
    pub config: Option<Result<ConfigJson, String>>,
    /// The device type the new OS will be (`--change-dt-to` or config.json's).
    pub target_slug: Option<String>,
    /// The image.
    pub image: ImageInput,
    /// Network profiles.
    pub networks: Result<NetworkSet, String>,
    /// Backup definition and its estimated size.
    pub backup: Option<Result<(BackupSpec, u64), String>>,
    /// Hostname to write into config.json (None with `--no-keep-name`).
    pub hostname: Option<String>,
}

/// The config.json to use: `-c`, else on balenaOS `/mnt/boot/config.json`.
pub fn config_path(facts: &Facts, given: Option<&Path>) -> Option<PathBuf> {
    given.map(Path::to_path_buf).or_else(|| {
        facts
            .is_balena_os
            .then(|| rootfs::join(&facts.root, Path::new("mnt/boot/config.json")))
            .filter(|p| p.exists())
    })
}

/// Gather inputs for a device described by `facts`.
pub fn gather(facts: &Facts, req: &Request) -> Gathered {
    let config = config_path(facts, req.config.as_deref()).map(|p| {
        ConfigJson::read(&p)
            .map_err(|e| e.to_string())
            .map(|mut c| {
                if let Some(slug) = &req.change_dt_to {
                    c.set_device_type(slug);
                }
                if !req.no_keep_name {
                    if let Some(h) = &facts.host.hostname {
                        c.set_hostname(h);
                    }
                }
                c
            })
    });
    let target_slug = req.change_dt_to.clone().or_else(|| {
        config
            .as_ref()
            .and_then(|c| c.as_ref().ok())
            .map(|c| c.device_type.clone())
    });
    let image = match &req.image {
        Some(p) => ImageInput::Local(
            image_check::inspect(p)
                .map(Box::new)
                .map_err(|e| e.to_string()),
        ),
        None => ImageInput::Download(req.version.clone()),
    };
    let networks =
        network::collect(&facts.root, &req.networks, facts.is_balena_os).map_err(|e| e.to_string());
    let backup = req.backup_cfg.as_ref().map(|p| {
        BackupSpec::read(p)
            .and_then(|s| s.estimate_size().map(|n| (s, n)))
            .map_err(|e| e.to_string())
    });
    Gathered {
        config,
        target_slug,
        image,
        networks,
        backup,
        hostname: (!req.no_keep_name)
            .then(|| facts.host.hostname.clone())
            .flatten(),
    }
}
