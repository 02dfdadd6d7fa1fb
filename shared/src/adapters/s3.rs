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

    /// A `PutObject` of `body` at `key` in the bucket.
    fn put_request(
        &self,
        key: &str,
        body: ByteStream,
        content_type: &str,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(
    e: aws_sdk_s3::error::SdkError<E>,
) -> ObjectError {
    ObjectError::Unavailable(aws_sdk_s3::error::DisplayErrorContext(e).to_string().into())
}

/// How many times one read of an object resumes after its connection broke.
const MAX_RESUMES: u32 = 5;

/// An object's body read to its end across broken connections: a consumer that reads at its
/// own pace (the importer waits on the database between chunks) may see the server close a
/// connection it did not read from for a while; the read then goes on with a ranged GET from
/// the next byte, of the same version (or, unversioned, the same ETag).
struct Resume {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    version_id: Option<String>,
    e_tag: Option<String>,
    body: ByteStream,
    offset: u64,
    resumes_left: u32,
}

impl Resume {
    fn into_stream(
        self,
    ) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin + 'static {
        Box::pin(futures::stream::try_unfold(self, |mut r| async move {
            loop {
                match r.body.next().await {
                    None => return Ok(None),
                    Some(Ok(bytes)) => {
                        r.offset += bytes.len() as u64;
                        return Ok(Some((bytes, r)));
                    }
                    Some(Err(e)) if r.resumes_left > 0 => {
                        r.resumes_left -= 1;
                        tracing::warn!(key = %r.key, offset = r.offset, error = %e,
                            "the object's connection broke; resuming the read");
                        r.body = r.reopen().await?;
                    }
                    Some(Err(e)) => return Err(std::io::Error::other(e)),
                }
            }
        }))
    }

    async fn reopen(&self) -> std::io::Result<ByteStream> {
        let mut get = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .range(format!("bytes={}-", self.offset));
        get = match (&self.version_id, &self.e_tag) {
            (Some(v), _) => get.version_id(v),
            (None, Some(tag)) => get.if_match(tag),
            (None, None) => get,
        };
        let out = get.send().await.map_err(|e| {
            std::io::Error::other(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
        })?;
        Ok(out.body)
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    #[tracing::instrument(skip(self, body), fields(bytes = body.len()))]
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), ObjectError> {
        self.put_request(key, ByteStream::from(body), content_type)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    #[tracing::instrument(skip(self, body), fields(bytes = body.len()))]
    async fn put_new(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<bool, ObjectError> {
        let sent = self
            .put_request(key, ByteStream::from(body), content_type)
            .if_none_match("*")
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            // 412: an object has the key. (409, a concurrent conditional write, stays an error:
            // the writer retries and then meets the 412.)
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
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
        self.put_request(key, body, content_type)
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
        let size = out.content_length().and_then(|n| u64::try_from(n).ok());
        let version_id = out.version_id().map(str::to_owned);
        let e_tag = out.e_tag().map(|t| t.trim_matches('"').to_owned());
        let resume = Resume {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            version_id: version_id.clone(),
            e_tag: out.e_tag().map(str::to_owned),
            body: out.body,
            offset: 0,
            resumes_left: MAX_RESUMES,
        };
        Ok(ObjectReader {
            size,
            version_id,
            e_tag,
            body: Box::new(tokio_util::io::StreamReader::new(resume.into_stream())),
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

    async fn presign_get(&self, key: &str, expires_in: Duration) -> Result<String, ObjectError> {
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| ObjectError::Unavailable(e.to_string().into()))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(unavailable)?;
        Ok(request.uri().to_owned())
    }
}
