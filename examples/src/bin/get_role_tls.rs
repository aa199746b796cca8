//! Reads a role with a rustls client configuration the program builds itself — the
//! way to bring certificates from anywhere (a secret store, memory) — wrapped in
//! `tp_creds::Tls`.
//!
//! ```sh
//! cargo run -p tp-examples --bin get-role-tls -- --cert out.crt --key out.key --ca out.cas --addr localhost:3025
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tp_creds::Tls;
use tp_examples::{Args, Failure, Parsed, get_role_and_print, run};

const USAGE: &str = "get-role-tls --cert FILE --key FILE --ca FILE --addr HOST:PORT [--role NAME]";

fn certs(path: &str) -> Result<Vec<CertificateDer<'static>>, Failure> {
    let bad = |e: String| {
        Failure::new(
            format!("cannot read certificates from {path}: {e}"),
            "pass a PEM file of CERTIFICATE blocks",
        )
    };
    let certs = CertificateDer::pem_file_iter(Path::new(path))
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

fn config(cert: &str, key: &str, ca: &str) -> Result<rustls::ClientConfig, Failure> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(Path::new(key)).map_err(|e| {
        Failure::new(
            format!("cannot read a private key from {key}: {e}"),
            "pass a PEM private key (PKCS#8, PKCS#1 or SEC1)",
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c).map_err(|e| {
            Failure::new(
                format!("bad CA certificate in {ca}: {e}"),
                "pass the cluster's CA",
            )
        })?;
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::new(format!("TLS: {e}"), "this is a bug in the example"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            Failure::new(
                format!("the key does not fit the certificate: {e}"),
                "pass the key the certificate was issued for",
            )
        })
}

fn main() -> ExitCode {
    let args = match Args::parse(
        std::env::args().skip(1),
        &["cert", "key", "ca", "addr", "role"],
        USAGE,
    ) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => return ExitCode::SUCCESS,
        Err(f) => return f.report(),
    };
    run(async move {
        let tls = config(
            args.required("cert")?,
            args.required("key")?,
            args.required("ca")?,
        )?;
        // Tls adds ALPN h2 and names the server teleport.cluster.local.
        let creds = Tls::new(Arc::new(tls));
        get_role_and_print(&creds, Some(args.required("addr")?), args.role()).await
    })
}
