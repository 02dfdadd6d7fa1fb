//! Reading JSON request bodies: content type, size limit, syntax and shape errors, each mapped
//! to its problem (415, 413, 400, 422) with the JSON Pointer of the offending field.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::problem::{FieldProblem, Problem};

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON body of type `T`, read under [`MAX_BODY_BYTES`].
pub struct JsonBody<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.rsplit_once('+').is_some_and(|(ty, suffix)| {
            ty.starts_with("application/") && suffix.eq_ignore_ascii_case("json")
        })
}

async fn read_limited(body: Body) -> Result<Vec<u8>, Problem> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| Problem::bad_request("the request body could not be read"))?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn too_large() -> Problem {
    Problem::too_large(format!(
        "the request body is larger than {MAX_BODY_BYTES} bytes"
    ))
}

/// The JSON Pointer of a serde path, plus the field a "missing"/"unknown field" message names.
fn pointer_of(path: &serde_path_to_error::Path, message: &str) -> String {
    use serde_path_to_error::Segment;
    let escape = |s: &str| s.replace('~', "~0").replace('/', "~1");
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } => pointer.push_str(&format!("/{}", escape(key))),
            Segment::Enum { variant } => pointer.push_str(&format!("/{}", escape(variant))),
            Segment::Unknown => {}
        }
    }
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    if let Some(field) = named {
        if !pointer.ends_with(&format!("/{}", escape(field))) {
            pointer.push('/');
            pointer.push_str(&escape(field));
        }
    }
    pointer
}

/// Parses `bytes` as `T`: a syntax error is 400, a shape error (wrong type, unknown or missing
/// field) is 422 naming the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Problem::malformed_json(format!("the request body is not valid JSON: {e}")))?;
    serde_path_to_error::deserialize(value).map_err(|err| {
        let message = err.inner().to_string();
        let mut problem = Problem::validation(&tms::ValidationErrors(vec![]), "");
        problem.errors = vec![FieldProblem {
            pointer: pointer_of(err.path(), &message),
            detail: message,
        }];
        problem
    })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_json(content_type) {
            return Err(Problem::unsupported_media_type(
                "the request body must be JSON (Content-Type: application/json)",
            ));
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
            return Err(too_large());
        }
        let bytes = read_limited(req.into_body()).await?;
        // Every request body of the API is an object; serde would read an array into a struct
        // whose fields may all be absent.
        if bytes.trim_ascii_start().first().is_some_and(|b| *b != b'{') {
            let value: Result<serde_json::Value, _> = serde_json::from_slice(&bytes);
            if value.is_ok() {
                let mut problem = Problem::validation(&tms::ValidationErrors(vec![]), "");
                problem.errors = vec![FieldProblem {
                    pointer: String::new(),
                    detail: "the request body must be a JSON object".into(),
                }];
                return Err(problem);
            }
        }
        parse_json(&bytes).map(JsonBody)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        kind: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Batch {
        tasks: Vec<Item>,
    }

    fn err(body: &str) -> Problem {
        parse_json::<Batch>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn syntax_errors_are_400() {
        for body in ["", "{", "{\"tasks\": [}", "[1] x", "nul"] {
            assert_eq!(err(body).status, 400, "{body:?}");
        }
    }

    #[test]
    fn shape_errors_are_422_with_the_field_pointer() {
        let cases = [
            (r#"{"tasks": [{"kind": 1}]}"#, "/tasks/0/kind"),
            (
                r#"{"tasks": [{"kind": "a"}, {"kind": "b", "extra": 1}]}"#,
                "/tasks/1/extra",
            ),
            (r#"{"tasks": [{}]}"#, "/tasks/0/kind"),
            (
                r#"{"tasks": [{"kind": "a", "inner": {"n": -1}}]}"#,
                "/tasks/0/inner/n",
            ),
            (
                r#"{"tasks": [{"kind": "a", "inner": {"n": 1, "a/b": 2}}]}"#,
                "/tasks/0/inner/a~1b",
            ),
            (r#"{}"#, "/tasks"),
            (r#"[]"#, ""),
        ];
        for (body, pointer) in cases {
            let p = err(body);
            assert_eq!(p.status, 422, "{body}");
            assert_eq!(p.errors[0].pointer, pointer, "{body}");
        }
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/merge-patch+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "application/xml",
            "application/jsonx",
            "text/json+xml",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
