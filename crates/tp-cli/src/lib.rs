//! The tp binaries' shared code: `tpd` runs the cluster, `tpctl` administers it like
//! `tctl`, `tpsh` logs a user in like `tsh`.
//!
//! **One job:** parse what a person types and format what they read. This is the only
//! crate that formats output for people.
//!
//! **Never depended on:** no library crate may depend on `tp-cli`.
