//! Server-side apply of the desired children and deletion of those no longer wanted.

use std::collections::BTreeSet;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use super::Error;
use crate::children::{self, Kind, MANAGER};
use crate::crd::Platform;

pub(super) fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

pub(super) async fn apply_children(
    client: &Client,
    namespace: &str,
    desired: &[children::Child],
) -> Result<(), Error> {
    for kind in Kind::ALL {
        let resource = kind.api_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        for child in desired.iter().filter(|c| c.kind == kind) {
            // A claim's spec is immutable once bound, and re-applying an identical claim
            // still bumps its resourceVersion: create claims, never re-apply them.
            if kind == Kind::PersistentVolumeClaim && api.get_opt(&child.name).await?.is_some() {
                continue;
            }
            api.patch(&child.name, &apply_params(), &Patch::Apply(&child.object))
                .await?;
        }
    }
    Ok(())
}

/// Deletes children of this platform (by label and owner) that are no longer desired.
pub(super) async fn prune(
    client: &Client,
    platform: &Platform,
    namespace: &str,
    desired: &[children::Child],
) -> Result<(), Error> {
    let uid = platform.uid();
    let generated = children::generated_secret_names(platform);
    let selector = children::children_selector(platform);
    for kind in Kind::ALL {
        let wanted: BTreeSet<&str> = desired
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.name.as_str())
            .chain(
                generated
                    .iter()
                    .map(String::as_str)
                    .filter(|_| kind == Kind::Secret),
            )
            .collect();
        let resource = kind.api_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let existing = api
            .list_metadata(&ListParams::default().labels(&selector))
            .await?;
        for object in existing.items {
            let name = object.name_any();
            let owned = object
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref());
            if owned && !wanted.contains(name.as_str()) {
                tracing::info!(kind = ?kind, %name, "deleting a child no longer wanted");
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    Ok(())
}
