//! `slipway host pin [--unpin] INDEX`: a pinned deployment is never pruned, not by an upgrade
//! nor by `cleanup` (libostree keeps the pin in the origin's transient state).

use anyhow::{Context, Result, bail};
use fn_error_context::context;

use super::Host;

/// What `pin` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// "deployment N (STATEROOT, commit C (version V))".
    pub deployment: String,
    pub pinned: bool,
    /// False when the deployment already was as asked.
    pub changed: bool,
}

/// Pin (or unpin) the deployment at `index` (as `status` numbers them).
#[context("Changing the pin of deployment {index} of the sysroot {}", host.path().display())]
pub fn pin(host: &Host, index: usize, pinned: bool) -> Result<Pinned> {
    let deps = host.deployments();
    let Some(dep) = deps.get(index) else {
        bail!(
            "there is no deployment {index} (the deployments are {}; see `slipway host status`)",
            match deps.len() {
                0 => "none".to_string(),
                1 => "0".to_string(),
                n => format!("0 to {}", n - 1),
            }
        );
    };
    let deployment = host.describe(dep);
    if dep.is_staged() {
        bail!("{deployment} is staged; staged deployments cannot be pinned");
    }
    if dep.is_pinned() == pinned {
        return Ok(Pinned {
            deployment,
            pinned,
            changed: false,
        });
    }
    host.sysroot()
        .deployment_set_pinned(dep, pinned)
        .with_context(|| format!("writing the origin of {deployment}"))?;
    Ok(Pinned {
        deployment,
        pinned,
        changed: true,
    })
}
