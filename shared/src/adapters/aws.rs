//! Loading the AWS configuration once per execution environment. `AWS_ENDPOINT_URL` points every
//! client at a local emulator.

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::{Builder, Connector, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;

/// The shared SDK configuration from the environment (region, credentials, endpoint), with an
/// HTTPS client that loads the trusted certificates on its first request.
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(lazy_https_client())
        .load()
        .await
}

/// The SDK's default HTTPS client (hyper 1, rustls on aws-lc, proxy settings from the
/// environment), except that it is not validated when a client is built. The default client's
/// validation builds a connector to load the system's root certificates early: reading every
/// file of the certificate directory took a third of a function's init (about 3 ms of 8), for
/// clients that often make their first request much later, or never.
pub fn lazy_https_client() -> SharedHttpClient {
    let inner = Builder::new().build_with_connector_fn(https_connector);
    LazyHttpsClient { inner }.into_shared()
}

/// A connector of the SDK's default HTTPS client: hyper 1, rustls on aws-lc, proxy settings from
/// the environment. Building one loads the system's root certificates.
pub(crate) fn https_connector(
    settings: Option<&HttpConnectorSettings>,
    components: Option<&RuntimeComponents>,
) -> Connector {
    let mut builder = ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
    builder.set_connector_settings(settings.cloned());
    if let Some(components) = components {
        builder.set_sleep_impl(components.sleep_impl());
    }
    builder.set_proxy_config(Some(ProxyConfig::from_env()));
    builder.build()
}

#[derive(Debug)]
struct LazyHttpsClient {
    inner: SharedHttpClient,
}

impl HttpClient for LazyHttpsClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.inner.http_connector(settings, components)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}
