//! Whom we trust: Mozilla's roots, the platform's, and extra CA certificates given as PEM.

use std::sync::Arc;

use super::ApiError;

/// Why PEM text gives no usable CA certificates, in words that follow the text's name.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UnusableCertificates {
    #[error("is not valid PEM ({0})")]
    NotPem(rustls::pki_types::pem::Error),
    #[error("holds no certificate")]
    None,
    #[error("holds a certificate that cannot be used ({0})")]
    Unusable(rustls::Error),
}

/// The trust anchors of extra CA certificates given as PEM text: at least one certificate, each
/// one rustls can use. Why not, in words that follow the text's name (`… is not valid PEM`).
pub(crate) fn ca_certificates(pem: &str) -> Result<rustls::RootCertStore, UnusableCertificates> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(UnusableCertificates::NotPem)?;
    if certs.is_empty() {
        return Err(UnusableCertificates::None);
    }
    let mut anchors = rustls::RootCertStore::empty();
    for cert in certs {
        anchors.add(cert).map_err(UnusableCertificates::Unusable)?;
    }
    Ok(anchors)
}

/// Mozilla's roots, the platform's (`SSL_CERT_FILE`, `SSL_CERT_DIR`) and any given as PEM.
pub(crate) fn trusted_roots(extra_ca_pem: Option<&str>) -> Result<rustls::RootCertStore, ApiError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        // A platform bundle may hold certificates rustls cannot use; skip those.
        let _ = roots.add(cert);
    }
    if let Some(pem) = extra_ca_pem.filter(|p| !p.trim().is_empty()) {
        let extra = ca_certificates(pem)
            .map_err(|why| ApiError::Setup(format!("the extra CA certificates {why}")))?;
        roots.roots.extend(extra.roots);
    }
    Ok(roots)
}

pub(crate) fn tls_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, ApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Setup(format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
