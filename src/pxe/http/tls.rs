//! TLS for the HTTP server (`pxe serve --tls-cert --tls-key`): a certificate chain and its
//! private key (PEM) become a `tokio_rustls::TlsAcceptor`; errors name the file and what is
//! wrong with it. The boot files stay reachable over plain HTTP (firmware and iPXE fetch
//! them); the same routes are served over HTTPS on a port of their own, so the repository and
//! the kickstarts (which carry keys and password hashes) can travel encrypted and
//! authenticated.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The acceptor for the certificate chain in `cert` (the server's certificate first) and the
/// private key in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        bail!(
            "{}: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
            cert.display()
        );
    }
    let private = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "{}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    // The one crypto provider built in (ring, as ureq's client uses).
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
    .with_single_cert(chain, private)
    .with_context(|| {
        format!(
            "{} and {}: the key does not belong to the certificate, or is of a kind TLS cannot use",
            cert.display(),
            key.display()
        )
    })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_no_certificate_or_key_are_named() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = (d.path().join("c.pem"), d.path().join("k.pem"));
        std::fs::write(&cert, "no certificate\n").unwrap();
        std::fs::write(&key, "no key\n").unwrap();
        let e = format!("{:#}", acceptor(&cert, &key).err().unwrap());
        assert!(e.contains(&cert.display().to_string()), "{e}");
        let e = format!(
            "{:#}",
            acceptor(&d.path().join("none"), &key).err().unwrap()
        );
        assert!(e.contains("none"), "{e}");
    }
}
