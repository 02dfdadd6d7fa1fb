//! S3 event notifications as they arrive in SQS message bodies.

use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::Value;

/// One object the notification says was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedObject {
    pub bucket: String,
    /// Decoded: S3 sends keys URL-encoded (`+` for a space).
    pub key: String,
    /// The version id, or the ETag in an unversioned bucket: what names this content.
    pub version: String,
    /// The version id to read, in a versioned bucket.
    pub version_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// `s3:TestEvent`, sent once when a notification is configured.
    Test,
    Created(Vec<CreatedObject>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an S3 event notification: {0}")]
pub struct NotificationError(String);

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Bucket,
    object: Object,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
struct Object {
    key: String,
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
    #[serde(rename = "eTag", default)]
    e_tag: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

/// Decodes an S3 event key: `+` is a space, then percent-decoding (UTF-8).
pub fn decode_key(raw: &str) -> String {
    percent_decode_str(&raw.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Parses an SQS body holding an S3 notification.
///
/// # Errors
/// [`NotificationError`] when the body is not one.
pub fn parse(body: &str) -> Result<Notification, NotificationError> {
    let value: Value = serde_json::from_str(body).map_err(|e| NotificationError(e.to_string()))?;
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notification::Test);
    }
    let parsed: Body =
        serde_json::from_value(value).map_err(|e| NotificationError(e.to_string()))?;
    if parsed.records.is_empty() {
        return Err(NotificationError("no Records".into()));
    }
    Ok(Notification::Created(
        parsed
            .records
            .into_iter()
            .filter(|r| r.event_name.is_empty() || r.event_name.starts_with("ObjectCreated"))
            .map(|r| {
                let o = r.s3.object;
                let version_id = o.version_id.filter(|v| !v.is_empty() && v != "null");
                let version = version_id
                    .clone()
                    .or_else(|| o.e_tag.map(|t| t.trim_matches('"').to_owned()))
                    .or(o.sequencer)
                    .unwrap_or_else(|| "unversioned".to_owned());
                CreatedObject {
                    bucket: r.s3.bucket.name,
                    key: decode_key(&o.key),
                    version,
                    version_id,
                }
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_url_decoded() {
        assert_eq!(
            decode_key("imports/demo/my+file%2B1.csv"),
            "imports/demo/my file+1.csv"
        );
        assert_eq!(decode_key("imports%2Fdemo%2Fa.csv"), "imports/demo/a.csv");
        assert_eq!(
            decode_key("imports/demo/%C3%BCn%C3%AF.jsonl"),
            "imports/demo/ünï.jsonl"
        );
    }

    #[test]
    fn created_objects_with_version_or_etag() {
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"data"},"object":{"key":"imports/demo/a+b.csv","size":10,"eTag":"\"abc\"","versionId":"v7"}}},
            {"eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"data"},"object":{"key":"imports/demo/c.csv","eTag":"\"def\""}}},
            {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"data"},"object":{"key":"imports/demo/d.csv"}}}]}"#;
        let Notification::Created(objects) = parse(body).unwrap() else {
            panic!()
        };
        assert_eq!(
            objects,
            vec![
                CreatedObject {
                    bucket: "data".into(),
                    key: "imports/demo/a b.csv".into(),
                    version: "v7".into(),
                    version_id: Some("v7".into())
                },
                CreatedObject {
                    bucket: "data".into(),
                    key: "imports/demo/c.csv".into(),
                    version: "def".into(),
                    version_id: None
                },
            ]
        );
    }

    #[test]
    fn test_events_and_garbage() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-22T10:00:00.000Z","Bucket":"data","RequestId":"1","HostId":"2"}"#;
        assert_eq!(parse(test).unwrap(), Notification::Test);
        assert!(parse("not json").is_err());
        assert!(parse("{}").is_err());
        assert!(parse(r#"{"Records":[{"s3":{}}]}"#).is_err());
    }
}
