//! [`S3ObjectStore`]: the data bucket.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use crate::ports::{ObjectError, ObjectReader, ObjectStore};

/// An S3 client for `config`; path-style addressing when an endpoint is configured (a local
/// emulator has no per-bucket host names).
pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let builder =
        aws_sdk_s3::config::Builder::from(config).force_path_style(config.endpoint_url().is_some());
    aws_sdk_s3::Client::from_conf(builder.build())
}

#[derive(Clone)]
pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3ObjectStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(
    e: aws_sdk_s3::error::SdkError<E>,
) -> ObjectError {
    ObjectError::Unavailable(aws_sdk_s3::error::DisplayErrorContext(e).to_string().into())
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    #[tracing::instrument(skip(self, body), fields(bytes = body.len()))]
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), ObjectError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        content_type: &str,
    ) -> Result<(), ObjectError> {
        let body = ByteStream::from_path(path).await.map_err(|e| {
            ObjectError::Unavailable(format!("cannot read {}: {e}", path.display()).into())
        })?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn open(&self, key: &str, version: Option<&str>) -> Result<ObjectReader, ObjectError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
            .map_err(|e| match &e {
                aws_sdk_s3::error::SdkError::ServiceError(s)
                    if matches!(s.err(), GetObjectError::NoSuchKey(_))
                        || s.raw().status().as_u16() == 404 =>
                {
                    ObjectError::NotFound(key.to_owned())
                }
                _ => unavailable(e),
            })?;
        Ok(ObjectReader {
            size: out.content_length().and_then(|n| u64::try_from(n).ok()),
            version_id: out.version_id().map(str::to_owned),
            e_tag: out.e_tag().map(|t| t.trim_matches('"').to_owned()),
            body: Box::new(out.body.into_async_read()),
        })
    }

    async fn presign_put(
        &self,
        key: &str,
        content_length: u64,
        expires_in: Duration,
    ) -> Result<String, ObjectError> {
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| ObjectError::Unavailable(e.to_string().into()))?;
        let length = i64::try_from(content_length)
            .map_err(|_| ObjectError::Unavailable("the content length is out of range".into()))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(length)
            .presigned(config)
            .await
            .map_err(unavailable)?;
        Ok(request.uri().to_owned())
    }
}
