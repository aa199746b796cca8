//! First start of a cluster's storage: the cluster name, the user and host CAs, and the
//! preset roles. Running it again reuses everything already there.

use prost::Message;
use tp_proto::types::{CertAuthorityV2, ClusterNameSpecV2, ClusterNameV2, Metadata, RoleV6};

use crate::ca::{self, CaError, CaType};
use crate::rbac::presets;
use crate::store::{Kind, Store, StoreError};

/// The fixed name of the cluster-name singleton.
pub const CLUSTER_NAME_KEY: &str = "cluster-name";

/// What a started cluster has: its name and its CAs (with private keys).
#[derive(Debug, Clone)]
pub struct ClusterState {
    /// The cluster name.
    pub name: String,
    /// The user CA.
    pub user_ca: CertAuthorityV2,
    /// The host CA.
    pub host_ca: CertAuthorityV2,
}

/// Why bootstrap failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The storage belongs to another cluster.
    OtherCluster {
        /// The name found in storage.
        stored: String,
        /// The name asked for.
        wanted: String,
    },
    /// Storage failed.
    Store(StoreError),
    /// Creating a CA failed.
    Ca(CaError),
}

impl std::fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OtherCluster { stored, wanted } => write!(
                f,
                "this data belongs to cluster {stored:?}, not {wanted:?}; use another data directory or --cluster-name={stored}"
            ),
            Self::Store(e) => write!(f, "bootstrap: {e}"),
            Self::Ca(e) => write!(f, "bootstrap: {e}"),
        }
    }
}

impl std::error::Error for BootstrapError {}

impl From<StoreError> for BootstrapError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn ca_key(kind: CaType, cluster: &str) -> String {
    format!("{}/{cluster}", kind.as_str())
}

/// Prepares `store` for cluster `name` (created if empty; `None` takes the stored
/// name) at time `now`, and returns the cluster's state. New CAs get the default keys.
pub async fn bootstrap(
    store: &dyn Store,
    name: Option<&str>,
    now: i64,
) -> Result<ClusterState, BootstrapError> {
    bootstrap_with(store, name, now, ca::SignatureAlgorithmSuite::default()).await
}

/// [`bootstrap`], with CAs that do not exist yet created with the keys of `suite`
/// (existing CAs keep theirs).
pub async fn bootstrap_with(
    store: &dyn Store,
    name: Option<&str>,
    now: i64,
    suite: ca::SignatureAlgorithmSuite,
) -> Result<ClusterState, BootstrapError> {
    let cluster = match store.get(Kind::ClusterName, CLUSTER_NAME_KEY).await {
        Ok(item) => {
            let cn: ClusterNameV2 = item.decode()?;
            let stored = cn.spec.map(|s| s.cluster_name).unwrap_or_default();
            if let Some(wanted) = name.filter(|w| *w != stored) {
                return Err(BootstrapError::OtherCluster {
                    stored,
                    wanted: wanted.to_string(),
                });
            }
            stored
        }
        Err(StoreError::NotFound) => {
            let name = name.unwrap_or("tp.local").to_string();
            let mut id = [0u8; 16];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
                .map_err(|_| BootstrapError::Ca(CaError::Crypto("no randomness".into())))?;
            let cn = ClusterNameV2 {
                kind: "cluster_name".into(),
                version: "v2".into(),
                metadata: Some(Metadata {
                    name: CLUSTER_NAME_KEY.into(),
                    namespace: "default".into(),
                    ..Default::default()
                }),
                spec: Some(ClusterNameSpecV2 {
                    cluster_name: name.clone(),
                    cluster_id: hex::encode(id),
                }),
                ..Default::default()
            };
            store
                .create(
                    Kind::ClusterName,
                    CLUSTER_NAME_KEY,
                    cn.encode_to_vec(),
                    None,
                )
                .await?;
            name
        }
        Err(e) => return Err(e.into()),
    };
    let mut cas = Vec::with_capacity(2);
    for kind in [CaType::User, CaType::Host] {
        let key = ca_key(kind, &cluster);
        let ca = match store.get(Kind::CertAuthority, &key).await {
            Ok(item) => item.decode::<CertAuthorityV2>()?,
            Err(StoreError::NotFound) => {
                let ca =
                    ca::generate_with(&cluster, kind, now, suite).map_err(BootstrapError::Ca)?;
                store
                    .create(Kind::CertAuthority, &key, ca.encode_to_vec(), None)
                    .await?;
                ca
            }
            Err(e) => return Err(e.into()),
        };
        cas.push(ca);
    }
    for role in presets::presets() {
        let name = role
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        match store
            .create(Kind::Role, &name, RoleV6::encode_to_vec(&role), None)
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let host_ca = cas
        .pop()
        .ok_or_else(|| BootstrapError::Ca(CaError::NoKey("host CA".into())))?;
    let user_ca = cas
        .pop()
        .ok_or_else(|| BootstrapError::Ca(CaError::NoKey("user CA".into())))?;
    Ok(ClusterState {
        name: cluster,
        user_ca,
        host_ca,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BackendStore;

    #[tokio::test]
    async fn a_second_start_reuses_everything_and_guards_the_name() {
        let store = BackendStore::memory();
        let first = bootstrap(&store, Some("example.com"), 1_800_000_000)
            .await
            .unwrap();
        let again = bootstrap(&store, None, 1_800_000_100).await.unwrap();
        assert_eq!(again.name, "example.com");
        assert_eq!(
            again.user_ca, first.user_ca,
            "the CA is reused, not regenerated"
        );
        assert_eq!(again.host_ca, first.host_ca);
        assert_ne!(first.user_ca, first.host_ca);
        let e = bootstrap(&store, Some("other.example.com"), 1_800_000_200)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("belongs to cluster \"example.com\""),
            "{e}"
        );
        assert!(
            store.get(Kind::Role, "editor").await.is_ok(),
            "presets exist"
        );
    }
}
