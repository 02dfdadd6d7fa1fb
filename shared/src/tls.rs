//! The one TLS stack of every package: rustls on aws-lc, the provider the AWS SDK uses.

/// Makes aws-lc the process's default rustls provider, as reqwest requires of a build without
/// one of its own (ours has none, so no second crypto library is linked). Call it before
/// building an HTTP client; calling it again changes nothing.
pub fn install_crypto_provider() {
    // An error only says that a provider is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
