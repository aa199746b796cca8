//! The identity Teleport encodes in an X.509 certificate's subject (wire-client spec §4.1
//! for users, §4.3 for hosts), both directions.
//!
//! Standard attributes carry the core: CN = user name (hosts: `<host id>.<cluster>`),
//! O = roles (hosts: the system role), OU = usage restrictions, L = logins, STREET =
//! route-to-cluster, postalCode = traits as JSON. Teleport's own `1.3.9999.x` attributes
//! are further subject attributes (not extensions); [`oids`] names every one, the
//! commonest have fields here and the rest are kept, in order, in
//! [`TlsIdentity::attributes`] so decoding and re-encoding loses nothing.
//!
//! Encoding follows Go's `crypto/x509/pkix`: attributes in the order L, STREET,
//! postalCode, O, OU, CN, then the extra attributes; all values of one standard type in
//! one RDN (a DER `SET OF`, sorted); each extra attribute in its own RDN; a value is a
//! PrintableString when it can be and a UTF8String otherwise.

use std::collections::BTreeMap;

use x509_parser::x509::X509Name;

use crate::Error;

/// Teleport's subject attribute OIDs (`1.3.9999.x`), with the names tp uses for them.
pub mod oids {
    /// Kubernetes users (multi).
    pub const KUBE_USERS: &str = "1.3.9999.1.1";
    /// Kubernetes groups (multi).
    pub const KUBE_GROUPS: &str = "1.3.9999.1.2";
    /// Target Kubernetes cluster.
    pub const KUBE_CLUSTER: &str = "1.3.9999.1.3";
    /// App session ID.
    pub const APP_SESSION_ID: &str = "1.3.9999.1.4";
    /// App cluster name.
    pub const APP_CLUSTER_NAME: &str = "1.3.9999.1.5";
    /// App public address.
    pub const APP_PUBLIC_ADDR: &str = "1.3.9999.1.6";
    /// The Teleport cluster that issued the certificate.
    pub const TELEPORT_CLUSTER: &str = "1.3.9999.1.7";
    /// MFA-verified device UUID.
    pub const MFA_VERIFIED: &str = "1.3.9999.1.8";
    /// Login IP.
    pub const LOGIN_IP: &str = "1.3.9999.1.9";
    /// App name.
    pub const APP_NAME: &str = "1.3.9999.1.10";
    /// App AWS role ARN.
    pub const APP_AWS_ROLE_ARN: &str = "1.3.9999.1.11";
    /// Allowed AWS role ARNs (multi).
    pub const AWS_ROLE_ARNS: &str = "1.3.9999.1.12";
    /// Renewable (`true`).
    pub const RENEWABLE: &str = "1.3.9999.1.13";
    /// Generation (decimal).
    pub const GENERATION: &str = "1.3.9999.1.14";
    /// Private key policy.
    pub const PRIVATE_KEY_POLICY: &str = "1.3.9999.1.15";
    /// User type (`local` or `sso`).
    pub const USER_TYPE: &str = "1.3.9999.1.20";
    /// Impersonator user name.
    pub const IMPERSONATOR: &str = "1.3.9999.2.7";
    /// Active access request IDs (multi).
    pub const ACTIVE_REQUESTS: &str = "1.3.9999.2.8";
    /// Disallow reissue (`true`).
    pub const DISALLOW_REISSUE: &str = "1.3.9999.2.9";
    /// System roles of a multi-role ("Instance") host certificate (multi).
    pub const SYSTEM_ROLES: &str = "1.3.9999.2.11";
    /// Previous identity expiry (RFC 3339).
    pub const PREVIOUS_IDENTITY_EXPIRES: &str = "1.3.9999.2.12";
    /// Pinned IP.
    pub const PINNED_IP: &str = "1.3.9999.2.15";
    /// Bot name.
    pub const BOT_NAME: &str = "1.3.9999.2.18";
    /// Bot instance ID.
    pub const BOT_INSTANCE_ID: &str = "1.3.9999.2.20";
    /// Trusted device ID.
    pub const DEVICE_ID: &str = "1.3.9999.3.1";
}

const OID_CN: &str = "2.5.4.3";
const OID_O: &str = "2.5.4.10";
const OID_OU: &str = "2.5.4.11";
const OID_L: &str = "2.5.4.7";
const OID_STREET: &str = "2.5.4.9";
const OID_POSTAL_CODE: &str = "2.5.4.17";

/// A Teleport identity as an X.509 subject carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsIdentity {
    /// CN: the user name, or `<host id>.<cluster>` for a host.
    pub username: String,
    /// O: role names (users) or the system role (hosts).
    pub groups: Vec<String>,
    /// OU: usage restrictions such as `usage:kube`; empty means full API access.
    pub usage: Vec<String>,
    /// L: allowed logins (SSH principals).
    pub principals: Vec<String>,
    /// STREET: the cluster to route requests to (may be empty).
    pub route_to_cluster: String,
    /// postalCode: traits (JSON; Teleport writes `null` for none).
    pub traits: BTreeMap<String, Vec<String>>,
    /// `1.3.9999.1.7`: the cluster that issued the certificate.
    pub teleport_cluster: String,
    /// Every other `1.3.9999.x` (or unknown) attribute, as (OID, value) in subject order;
    /// multi-valued attributes repeat the OID.
    pub attributes: Vec<(String, String)>,
}

impl TlsIdentity {
    /// A user identity with `roles`, issued by and routed to `cluster`.
    pub fn user(
        username: impl Into<String>,
        roles: Vec<String>,
        cluster: impl Into<String>,
    ) -> Self {
        let cluster = cluster.into();
        Self {
            username: username.into(),
            groups: roles,
            route_to_cluster: cluster.clone(),
            teleport_cluster: cluster,
            ..Self::default()
        }
    }

    /// A host identity: CN `<host_id>.<cluster>`, O = `system_role` (e.g. `Proxy`).
    pub fn host(host_id: &str, cluster: &str, system_role: &str) -> Self {
        Self {
            username: format!("{host_id}.{cluster}"),
            groups: vec![system_role.to_string()],
            teleport_cluster: cluster.to_string(),
            ..Self::default()
        }
    }

    /// The values of an extra attribute.
    pub fn attribute(&self, oid: &str) -> impl Iterator<Item = &str> {
        self.attributes
            .iter()
            .filter(move |(o, _)| o == oid)
            .map(|(_, v)| v.as_str())
    }

    /// The traits as Teleport writes them: a JSON object, or `null` when there are none.
    pub fn traits_json(&self) -> String {
        if self.traits.is_empty() {
            "null".to_string()
        } else {
            serde_json::to_string(&self.traits).unwrap_or_else(|_| "null".to_string())
        }
    }

    /// The DER `Name` (RDNSequence) for a certificate's subject.
    pub fn subject_der(&self) -> Result<Vec<u8>, Error> {
        use crate::der::{constructed, oid_content, tag};
        // Content octets of the standard attribute types and Teleport's cluster OID.
        const L: &[u8] = &[0x55, 0x04, 0x07];
        const STREET: &[u8] = &[0x55, 0x04, 0x09];
        const POSTAL_CODE: &[u8] = &[0x55, 0x04, 0x11];
        const O: &[u8] = &[0x55, 0x04, 0x0a];
        const OU: &[u8] = &[0x55, 0x04, 0x0b];
        const CN: &[u8] = &[0x55, 0x04, 0x03];
        const CLUSTER: &[u8] = &[0x2b, 0xce, 0x0f, 0x01, 0x07]; // 1.3.9999.1.7
        let traits = self.traits_json();
        let extra = self
            .attributes
            .iter()
            .map(|(oid, value)| Ok((oid_content(oid)?, value.as_str())))
            .collect::<Result<Vec<_>, Error>>()?;
        let mut out = Vec::with_capacity(
            64 + traits.len()
                + self.username.len()
                + self.route_to_cluster.len()
                + self.teleport_cluster.len()
                + [&self.principals, &self.groups, &self.usage]
                    .iter()
                    .flat_map(|v| v.iter())
                    .map(|v| v.len() + 16)
                    .sum::<usize>(),
        );
        constructed(&mut out, tag::SEQUENCE, |out| {
            rdn(out, L, &self.principals);
            rdn(out, STREET, &[&self.route_to_cluster]);
            rdn(out, POSTAL_CODE, &[&traits]);
            rdn(out, O, &self.groups);
            rdn(out, OU, &self.usage);
            rdn(out, CN, &[&self.username]);
            if !self.teleport_cluster.is_empty() {
                rdn(out, CLUSTER, &[&self.teleport_cluster]);
            }
            for (oid, value) in &extra {
                rdn(out, oid, &[value]);
            }
        });
        Ok(out)
    }

    /// Decodes the identity in a parsed subject. `origin` names the certificate in errors.
    pub fn from_name(name: &X509Name<'_>, origin: &str) -> Result<Self, Error> {
        let mut id = Self::default();
        for rdn in name.iter() {
            for attr in rdn.iter() {
                let oid = attr.attr_type().to_id_string();
                let value = attr
                    .as_str()
                    .map_err(|_| {
                        Error::invalid(origin, format!("subject attribute {oid} is not a string"))
                    })?
                    .to_string();
                match oid.as_str() {
                    OID_CN => id.username = value,
                    OID_O => id.groups.push(value),
                    OID_OU => id.usage.push(value),
                    OID_L => id.principals.push(value),
                    OID_STREET => id.route_to_cluster = value,
                    OID_POSTAL_CODE => {
                        if !value.is_empty() && value != "null" {
                            id.traits = serde_json::from_str(&value).map_err(|e| {
                                Error::invalid(origin, format!("traits (subject postalCode) are not a JSON map of lists: {e}"))
                            })?;
                        }
                    }
                    oids::TELEPORT_CLUSTER => id.teleport_cluster = value,
                    _ if oid.starts_with("2.5.4.") => {} // C, ST, ... : not part of Teleport's identity
                    _ => id.attributes.push((oid, value)),
                }
            }
        }
        Ok(id)
    }

    /// Decodes the identity in a DER certificate.
    pub fn from_certificate_der(der: &[u8], origin: &str) -> Result<Self, Error> {
        let cert = crate::cert::parse_x509(der, origin)?;
        Self::from_name(cert.subject(), origin)
    }
}

/// Appends one AttributeTypeAndValue: the type `oid` (content octets) and `value` as a
/// PrintableString when it can be one, a UTF8String otherwise (as Go's `pkix` does).
fn atv(out: &mut Vec<u8>, oid: &[u8], value: &str) {
    use crate::der::{constructed, primitive, tag};
    constructed(out, tag::SEQUENCE, |out| {
        primitive(out, tag::OID, oid);
        // Tag 19 for every character X.680 allows in a PrintableString (such as '?').
        let t = if is_printable(value) {
            tag::PRINTABLE_STRING
        } else {
            tag::UTF8_STRING
        };
        primitive(out, t, value.as_bytes());
    });
}

/// Appends one RDN holding every value of attribute type `oid` (none: nothing), a DER
/// SET OF with its elements in ascending order of their encodings.
fn rdn<S: AsRef<str>>(out: &mut Vec<u8>, oid: &[u8], values: &[S]) {
    use crate::der::{constructed, tag};
    match values {
        [] => {}
        [one] => constructed(out, tag::SET, |out| atv(out, oid, one.as_ref())),
        many => {
            let mut encoded: Vec<Vec<u8>> = many
                .iter()
                .map(|v| {
                    let mut e = Vec::with_capacity(oid.len() + v.as_ref().len() + 8);
                    atv(&mut e, oid, v.as_ref());
                    e
                })
                .collect();
            encoded.sort();
            constructed(out, tag::SET, |out| {
                for e in &encoded {
                    out.extend_from_slice(e);
                }
            });
        }
    }
}

fn is_printable(s: &str) -> bool {
    s.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b' ' | b'\'' | b'(' | b')' | b'+' | b',' | b'-' | b'.' | b'/' | b':' | b'=' | b'?'
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer as _;

    #[test]
    fn subject_round_trips_with_every_part() {
        let mut id = TlsIdentity::user(
            "alice",
            vec!["editor".into(), "access".into()],
            "example.com",
        );
        id.principals = vec!["root".into(), "alice".into()];
        id.usage = vec!["usage:kube".into()];
        id.traits.insert("logins".into(), vec!["ålice".into()]);
        id.attributes.push((oids::KUBE_GROUPS.into(), "g1".into()));
        id.attributes.push((oids::KUBE_GROUPS.into(), "g2".into()));
        id.attributes.push((oids::RENEWABLE.into(), "true".into()));
        let der = id.subject_der().unwrap();
        let (_, name) = X509Name::from_der(&der).unwrap();
        let back = TlsIdentity::from_name(&name, "t").unwrap();
        // Within one RDN values are in DER SET OF order (by encoding, so shorter first):
        // compare multi-valued fields as sets.
        let norm = |mut i: TlsIdentity| {
            i.groups.sort();
            i.principals.sort();
            i
        };
        assert_eq!(norm(back.clone()), norm(id));
        assert_eq!(
            back.attribute(oids::KUBE_GROUPS).collect::<Vec<_>>(),
            ["g1", "g2"]
        );
    }

    #[test]
    fn no_traits_encode_as_null() {
        let id = TlsIdentity::host("abc", "example.com", "Proxy");
        assert_eq!(id.traits_json(), "null");
        let der = id.subject_der().unwrap();
        let (_, name) = X509Name::from_der(&der).unwrap();
        let back = TlsIdentity::from_name(&name, "t").unwrap();
        assert_eq!(back.username, "abc.example.com");
        assert_eq!(back.groups, ["Proxy"]);
        assert!(back.traits.is_empty());
    }

    fn parse_oid(text: &str) -> Result<yasna::models::ObjectIdentifier, Error> {
        let parts: Vec<u64> = text
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| Error::invalid("identity", "bad OID"))?;
        Ok(yasna::models::ObjectIdentifier::from_slice(&parts))
    }

    /// The encoding before `crate::der` (yasna, an allocation per attribute), kept as
    /// the oracle the new writer must match byte for byte.
    fn subject_der_yasna(id: &TlsIdentity) -> Result<Vec<u8>, Error> {
        let traits = id.traits_json();
        let mut rdns: Vec<(String, Vec<&str>)> = vec![
            (
                OID_L.into(),
                id.principals.iter().map(String::as_str).collect(),
            ),
            (OID_STREET.into(), vec![id.route_to_cluster.as_str()]),
            (OID_POSTAL_CODE.into(), vec![traits.as_str()]),
            (OID_O.into(), id.groups.iter().map(String::as_str).collect()),
            (OID_OU.into(), id.usage.iter().map(String::as_str).collect()),
            (OID_CN.into(), vec![id.username.as_str()]),
        ];
        if !id.teleport_cluster.is_empty() {
            rdns.push((
                oids::TELEPORT_CLUSTER.into(),
                vec![id.teleport_cluster.as_str()],
            ));
        }
        rdns.retain(|(_, v)| !v.is_empty());
        let mut extra = Vec::new();
        for (oid, value) in &id.attributes {
            extra.push((oid.clone(), vec![value.as_str()]));
        }
        let mut all = Vec::new();
        for (oid, values) in rdns.into_iter().chain(extra) {
            let oid = parse_oid(&oid)?;
            // DER SET OF: the encoded elements in ascending byte order.
            let mut atvs: Vec<Vec<u8>> = values
                .iter()
                .map(|v| {
                    yasna::construct_der(|w| {
                        w.write_sequence(|w| {
                            w.next().write_oid(&oid);
                            if is_printable(v) {
                                // Tag 19 written directly: yasna's own PrintableString
                                // writer refuses characters X.680 allows (such as '?').
                                w.next()
                                    .write_tagged_implicit(yasna::tags::TAG_PRINTABLESTRING, |w| {
                                        w.write_bytes(v.as_bytes())
                                    });
                            } else {
                                w.next().write_utf8_string(v);
                            }
                        })
                    })
                })
                .collect();
            atvs.sort();
            all.push(atvs);
        }
        Ok(yasna::construct_der(|w| {
            w.write_sequence(|w| {
                for atvs in &all {
                    w.next().write_set(|w| {
                        for atv in atvs {
                            w.next().write_der(atv);
                        }
                    });
                }
            })
        }))
    }

    fn names() -> impl proptest::strategy::Strategy<Value = Vec<String>> {
        proptest::collection::vec("[a-zA-Z0-9 ?'_*@.-]{0,16}|\\PC{1,8}", 0..4)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The DER writer encodes every subject exactly as yasna did.
        #[test]
        fn subject_encoding_matches_yasna_byte_for_byte(
            user in "\\PC{0,20}", roles in names(), logins in names(), usage in names(),
            route in "\\PC{0,12}", cluster in "[a-z.]{0,12}",
            traits in proptest::collection::btree_map("\\PC{1,6}", names(), 0..3),
            extra in proptest::collection::vec(("1\\.3\\.9999\\.[123]\\.[0-9]{1,3}", "\\PC{0,300}"), 0..3),
        ) {
            let mut id = TlsIdentity::user(user, roles, cluster);
            id.principals = logins;
            id.usage = usage;
            id.route_to_cluster = route;
            id.traits = traits;
            id.attributes = extra;
            proptest::prop_assert_eq!(id.subject_der().unwrap(), subject_der_yasna(&id).unwrap());
        }
    }
}
