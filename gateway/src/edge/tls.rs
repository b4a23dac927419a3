//! TLS listeners: certificate and key loading, and a certificate store that a reload swaps
//! without a restart (new handshakes use the new pair; open connections keep theirs).

use crate::config::TlsFiles;
use arc_swap::ArcSwap;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::TlsAccept;
use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use std::sync::Arc;

/// Reads and checks a certificate chain and its key: both readable PEM, the key not
/// readable by group or others, the key matching the certificate.
pub fn load(files: &TlsFiles) -> Result<Arc<CertifiedKey>, String> {
    crate::config::check_private_file(&files.key_file)?;
    let (certs, key) = match pingora_core::tls::load_certs_and_key_files(&files.cert_file, &files.key_file) {
        Ok(Some(pair)) => pair,
        Ok(None) => {
            return Err(format!("no certificate in {} or no private key in {}", files.cert_file, files.key_file))
        }
        Err(e) => return Err(format!("cannot read {} / {}: {e}", files.cert_file, files.key_file)),
    };
    pingora_core::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default().ok_or("no TLS crypto provider installed")?;
    CertifiedKey::from_der(certs, key, provider)
        .map(Arc::new)
        .map_err(|e| format!("{} and {} do not form a usable pair: {e}", files.cert_file, files.key_file))
}

/// The certificate a TLS listener presents, swapped in place on reload.
#[derive(Debug)]
pub struct CertStore {
    pub files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn new(files: TlsFiles) -> Result<Arc<CertStore>, String> {
        let key = load(&files)?;
        Ok(Arc::new(CertStore { files, current: ArcSwap::new(key) }))
    }

    /// Re-reads the files (for a reload): on error the current pair stays.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), String> {
        let key = load(files)?;
        self.current.store(key);
        Ok(())
    }

    /// Pingora's TLS settings for a listener presenting this store's certificate, with
    /// ALPN `h2` then `http/1.1` (TLS 1.2 and 1.3 only is Pingora's rustls default).
    pub fn settings(self: &Arc<Self>) -> Result<TlsSettings, String> {
        let mut settings = TlsSettings::with_callbacks(Box::new(NoCallbacks)).map_err(|e| e.to_string())?;
        settings.set_cert_resolver(self.clone());
        settings.enable_h2();
        Ok(settings)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

struct NoCallbacks;

#[async_trait::async_trait]
impl TlsAccept for NoCallbacks {}
