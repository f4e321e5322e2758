//! `slipway host rollback`: the rollback deployment becomes the default and the default
//! becomes the rollback. Only the order of the deployment list changes (libostree writes
//! new boot entries for it); nothing is deployed or removed.

use anyhow::{Context, Result, bail};
use fn_error_context::context;

use super::{CommitInfo, Host};

/// The state after a rollback.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RolledBack {
    /// The new default (the previous rollback).
    pub default: CommitInfo,
    /// The new rollback (the previous default).
    pub rollback: CommitInfo,
    /// How many entries the regenerated boot menu has.
    pub boot_entries: usize,
}

/// The deployment list with the one at `index` moved to the front.
pub fn moved_to_front<T: Clone>(list: &[T], index: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(list.len());
    if let Some(x) = list.get(index) {
        out.push(x.clone());
    }
    out.extend(
        list.iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, x)| x.clone()),
    );
    out
}

/// `slipway host rollback` on `host` (locked for writing).
#[context("Rolling back the sysroot {}", host.path().display())]
pub fn rollback(host: &Host) -> Result<RolledBack> {
    host.refuse_if_staged()?;
    let deps = host.deployments();
    let Some(first) = deps.first() else {
        bail!("the sysroot {} has no deployments", host.path().display());
    };
    let Some(r) = host.rollback_index() else {
        bail!(
            "there is no rollback deployment: {} is the only deployment of stateroot {}",
            host.describe(first),
            first.osname()
        );
    };
    let from = host.describe(first);
    let to = host.describe(&deps[r]);
    let store = super::health::Store::open(host, deps[r].osname().as_str());
    if let Some(rej) = store.of(&deps[r])?.rejected {
        bail!(
            "{to} was rejected by the health gate at {}: {}; it is not made the default \
             again (deploy its commit with `slipway host deploy` to try it anew)",
            rej.at,
            rej.reason
        );
    }
    super::health::start_trial(host, &deps[r])?;
    crate::sys::failpoint::hit("host-before-switch")?;
    let boot_entries = host
        .write_deployment_list(&moved_to_front(&deps, r))
        .with_context(|| format!("making {to} the default instead of {from}"))?;
    crate::sys::failpoint::hit("host-after-switch")?;
    let deps = host.deployments();
    let rollback = host
        .rollback_index()
        .and_then(|i| deps.get(i))
        .map(|d| host.commit_info(&d.csum()))
        .transpose()?;
    let (Some(default), Some(rollback)) = (deps.first(), rollback) else {
        bail!("the deployment list lost a deployment while rolling back");
    };
    Ok(RolledBack {
        default: host.commit_info(&default.csum())?,
        rollback,
        boot_entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rollback_moves_to_the_front_and_the_rest_keep_their_order() {
        assert_eq!(
            moved_to_front(&["a", "b", "c", "d"], 2),
            ["c", "a", "b", "d"]
        );
        assert_eq!(moved_to_front(&["a", "b"], 1), ["b", "a"]);
        assert_eq!(moved_to_front(&["a"], 0), ["a"]);
    }
}
