//! Where a kernel's modules and config are, for a build: from explicit
//! flags, or by the usual layout (`<root>/lib/modules/<release>` and
//! `<root>/boot/config-<release>`).

use crate::kconfig::KernelConfig;
use crate::kmod::ModuleIndex;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The kernel a ramdisk is built for.
#[derive(Debug, Default)]
pub struct KernelSource {
    /// Release string (`6.1.0-56-amd64`), if known.
    pub release: Option<String>,
    /// Module index, when modules are available.
    pub modules: Option<ModuleIndex>,
    /// Build config, when found.
    pub config: Option<KernelConfig>,
    /// Where the config was read from.
    pub config_path: Option<PathBuf>,
}

/// Resolve `--modules-dir` to the folder holding `modules.dep`: accepts the
/// release folder itself or its parent (`/lib/modules`).
fn release_dir(modules_dir: &Path, release: Option<&str>) -> Result<PathBuf> {
    if modules_dir.join("modules.dep").is_file() {
        return Ok(modules_dir.to_path_buf());
    }
    if let Some(r) = release {
        let d = modules_dir.join(r);
        if d.join("modules.dep").is_file() {
            return Ok(d);
        }
        bail!(
            "no modules.dep in {} or {}: pass the folder of kernel {r}'s modules \
             (run `depmod -b ROOT {r}` for modules extracted from a package)",
            modules_dir.display(),
            d.display()
        );
    }
    let found: Vec<PathBuf> = std::fs::read_dir(modules_dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("modules.dep").is_file())
                .collect()
        })
        .unwrap_or_default();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no modules.dep under {}: pass --modules-dir /lib/modules/<release>",
            modules_dir.display()
        ),
        _ => bail!(
            "several kernel releases under {}: pass --kernel-release",
            modules_dir.display()
        ),
    }
}

impl KernelSource {
    /// Gather from flags. At least one of `modules_dir`, `release` or
    /// `config` must be given.
    pub fn resolve(
        release: Option<&str>,
        modules_dir: Option<&Path>,
        config: Option<&Path>,
    ) -> Result<Self> {
        let mut ks = KernelSource {
            release: release.map(str::to_string),
            ..Default::default()
        };
        let mdir = match (modules_dir, release) {
            (Some(d), r) => Some(release_dir(d, r)?),
            (None, Some(r)) => Some(release_dir(Path::new("/lib/modules"), Some(r))?),
            (None, None) => None,
        };
        if let Some(d) = &mdir {
            ks.modules = Some(ModuleIndex::read(d)?);
            if ks.release.is_none() {
                ks.release = d.file_name().map(|n| n.to_string_lossy().into_owned());
            }
        }
        let cfg_path = match (config, &mdir, &ks.release) {
            (Some(c), _, _) => Some(c.to_path_buf()),
            (None, Some(d), Some(r)) => {
                // <root>/lib/modules/<rel> → <root>/boot/config-<rel>
                let beside = d
                    .parent()
                    .and_then(Path::parent)
                    .and_then(Path::parent)
                    .map(|root| root.join("boot").join(format!("config-{r}")));
                beside.filter(|p| p.is_file()).or_else(|| {
                    let sys = PathBuf::from(format!("/boot/config-{r}"));
                    sys.is_file().then_some(sys)
                })
            }
            _ => None,
        };
        if let Some(p) = &cfg_path {
            ks.config = Some(KernelConfig::read(p)?);
        }
        ks.config_path = cfg_path;
        if ks.modules.is_none() && ks.config.is_none() {
            bail!("no kernel given: pass --kernel-release and --modules-dir, or --kernel-config");
        }
        Ok(ks)
    }
}
