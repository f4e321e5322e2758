//! `slipway host cleanup`: remove the deployments nothing needs (not booted, not the
//! default, not the rollback, not pinned; other stateroots than the default's are left
//! alone; a deployment the health gate rejected goes even as the rollback), then libostree's
//! cleanup: leftovers of interrupted writes, boot files no entry uses, and repository
//! objects no ref or deployment references. The health records of removed deployments go
//! too, except the rejections, which keep `upgrade` from deploying a rejected commit again.

use anyhow::{Context, Result};
use fn_error_context::context;
use ostree::gio;

use super::Host;

/// What `cleanup` removed.
#[derive(Debug, Clone, Default)]
pub struct Cleaned {
    /// "deployment N (STATEROOT, commit C (version V))" of each removed deployment.
    pub removed: Vec<String>,
    /// How many deployments are left.
    pub kept: usize,
    /// Container images slipway imported that no deployment left binds.
    pub images_removed: Vec<String>,
    /// Such images docker would not remove (a container uses them), and why.
    pub images_kept: Vec<String>,
}

/// Whether cleanup keeps deployment `index` of a list whose rollback is `rollback`.
fn keeps(
    host: &Host,
    deps: &[ostree::Deployment],
    index: usize,
    rollback: Option<usize>,
    rejected: bool,
) -> bool {
    let d = &deps[index];
    let booted = host.booted().is_some_and(|b| b.equal(d));
    let other_stateroot = deps.first().is_some_and(|f| f.osname() != d.osname());
    index == 0
        || (Some(index) == rollback && !rejected)
        || booted
        || d.is_pinned()
        || other_stateroot
}

/// `slipway host cleanup` on `host` (locked for writing).
#[context("Cleaning up the sysroot {}", host.path().display())]
pub fn cleanup(host: &Host) -> Result<Cleaned> {
    host.refuse_if_staged()?;
    let deps = host.deployments();
    let rollback = host.rollback_index();
    let booted = host.booted();
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    for (i, d) in deps.iter().enumerate() {
        let store = super::health::Store::open(host, d.osname().as_str());
        let rejected = store.of(d)?.rejected.is_some();
        if keeps(host, &deps, i, rollback, rejected) {
            // libostree finds the booted deployment in the new list by the object's
            // address: the list holds the loaded objects themselves. `Deployment::clone`
            // is ostree_deployment_clone (a copy, which libostree takes for a removal of the
            // booted deployment); `Clone::clone` takes a reference.
            kept.push(Clone::clone(d));
        } else {
            removed.push(host.describe(d));
        }
    }
    if !removed.is_empty() {
        let ids = |v: &[ostree::Deployment]| -> String {
            v.iter()
                .map(|d| format!("{}.{}", &d.csum()[..12], d.deployserial()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        host.write_deployment_list(&kept).with_context(|| {
            format!(
                "removing {} (deployments {}; keeping {}; booted {})",
                removed.join(", "),
                ids(&deps),
                ids(&kept),
                booted
                    .as_ref()
                    .map(|b| ids(std::slice::from_ref(b)))
                    .unwrap_or_else(|| "none".into())
            )
        })?;
    }
    if let Some(first) = kept.first() {
        let store = super::health::Store::open(host, first.osname().as_str());
        let keep: Vec<(String, i32)> = kept
            .iter()
            .filter(|d| d.osname() == first.osname())
            .map(|d| (d.csum().to_string(), d.deployserial()))
            .collect();
        store.prune(&keep)?;
    }
    host.sysroot()
        .cleanup(gio::Cancellable::NONE)
        .context("removing unreferenced boot files, deployment leftovers and objects")?;
    // Images: only on the running host, and only while docker runs (asking through its
    // socket would start it).
    let (mut images_removed, mut images_kept) = (Vec::new(), Vec::new());
    let docker = host.is_running_root() && crate::services::docker::docker_running();
    let containerd =
        host.is_running_root() && crate::services::docker::unit_active("containerd.service");
    if docker || containerd {
        let mut bound = std::collections::BTreeSet::new();
        for d in &kept {
            let m = crate::services::Manifest::read(&host.deployment_root(d))?;
            bound.extend(m.images.into_iter().map(|i| i.digest));
        }
        if docker {
            (images_removed, images_kept) = crate::services::docker::remove_unbound(&bound)?;
        }
        if containerd {
            let (r, k) = crate::services::containerd::remove_unbound(&bound)?;
            let ns = crate::services::containerd::NAMESPACE;
            images_removed.extend(r.into_iter().map(|x| format!("{x} (containerd {ns})")));
            images_kept.extend(k.into_iter().map(|x| format!("{x} (containerd {ns})")));
        }
    }
    Ok(Cleaned {
        removed,
        kept: kept.len(),
        images_removed,
        images_kept,
    })
}

#[cfg(test)]
mod tests {
    use ostree::glib::translate::ToGlibPtr;

    fn ptr(d: &ostree::Deployment) -> *mut ostree::ffi::OstreeDeployment {
        d.to_glib_none().0
    }

    /// The pitfall `cleanup` avoids: the generated `Deployment::clone` copies the object, and
    /// libostree takes a list without the booted object itself for a removal of it.
    #[test]
    fn a_kept_deployment_is_the_loaded_object_not_a_copy() {
        let d = ostree::Deployment::new(0, "debian", &"a".repeat(64), 0, Some(&"b".repeat(64)), 0);
        // ostree_deployment_clone copies these two: a loaded deployment has both.
        d.set_bootconfig(Some(&ostree::BootconfigParser::new()));
        d.set_origin(Some(&ostree::glib::KeyFile::new()));
        assert_eq!(ptr(&Clone::clone(&d)), ptr(&d));
        assert_ne!(ptr(&d.clone()), ptr(&d));
    }
}
