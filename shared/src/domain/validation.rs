//! Payload validation per kind. Every error names the offending field as a JSON Pointer into
//! the submission (`/payload/sender`), so the API can list them in a problem's `errors[]`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::kind::TaskKind;
use super::webhook::{self, WebhookPolicy};

/// One invalid field: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON Pointer (RFC 6901) to the field in the submitted document.
    pub pointer: String,
    pub message: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

/// All the invalid fields of one submission (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn single(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError::new(pointer, message)])
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }
}

impl From<FieldError> for ValidationErrors {
    fn from(e: FieldError) -> Self {
        Self(vec![e])
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Escapes a key for use as a JSON Pointer reference token (RFC 6901 §3).
pub(crate) fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// An email address in dot-atom form (`local@example.com`): ASCII, local part ≤ 64, domain
/// of at least two LDH labels, whole address ≤ 254 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        const ATEXT_SPECIALS: &[u8] = b"!#$%&'*+-/=?^_`{|}~";
        if raw.len() > 254 {
            return Err("must be at most 254 characters");
        }
        let (local, domain) = raw
            .rsplit_once('@')
            .ok_or("must be an email address such as name@example.com")?;
        let atext = |b: u8| b.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(&b);
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .split('.')
                .all(|atom| !atom.is_empty() && atom.bytes().all(atext));
        if !local_ok {
            return Err("has an invalid local part (before the @)");
        }
        if !is_valid_domain(domain) {
            return Err("has an invalid domain (after the @)");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A DNS name of at least two labels, each 1–63 letters, digits or hyphens, not starting or
/// ending with a hyphen; the last label is not all digits.
pub fn is_valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

/// Validates `payload` for `kind`, collecting every error.
///
/// # Errors
/// Each invalid field, pointed at below `/payload`.
pub fn validate_payload(
    kind: TaskKind,
    payload: &Value,
    policy: &WebhookPolicy,
) -> Result<(), ValidationErrors> {
    let Some(object) = payload.as_object() else {
        return Err(ValidationErrors::single(
            "/payload",
            "must be a JSON object",
        ));
    };
    let mut errors = Vec::new();
    match kind {
        TaskKind::Email => validate_email(object, &mut errors),
        TaskKind::Webhook => validate_webhook(object, policy, &mut errors),
        TaskKind::Archive => validate_archive(object, &mut errors),
        TaskKind::Noop => {}
        TaskKind::Notification => {
            if let Err(e) = serde_json::from_value::<super::Delivery>(payload.clone()) {
                errors.push(FieldError::new(
                    "/payload",
                    format!("is not a delivery {{subscription_id, event_id, event}}: {e}"),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

fn field(name: &str) -> String {
    format!("/payload/{}", pointer_token(name))
}

fn reject_unknown(object: &Map<String, Value>, known: &[&str], errors: &mut Vec<FieldError>) {
    for key in object.keys().filter(|k| !known.contains(&k.as_str())) {
        errors.push(FieldError::new(field(key), "is not a known field"));
    }
}

fn required_string<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    match object.get(name) {
        None => {
            errors.push(FieldError::new(field(name), "is required"));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.push(FieldError::new(field(name), "must be a string"));
            None
        }
    }
}

const EMAIL_FIELDS: [&str; 5] = ["sender", "recipient", "subject", "body", "deliver"];
const SUBJECT_MAX: usize = 998;

fn validate_email(object: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    reject_unknown(object, &EMAIL_FIELDS, errors);
    for name in ["sender", "recipient"] {
        if let Some(address) = required_string(object, name, errors) {
            if let Err(why) = EmailAddress::parse(address) {
                errors.push(FieldError::new(field(name), why));
            }
        }
    }
    if let Some(subject) = required_string(object, "subject", errors) {
        let chars = subject.chars().count();
        if chars == 0 || chars > SUBJECT_MAX {
            errors.push(FieldError::new(
                field("subject"),
                "must be 1-998 characters",
            ));
        }
    }
    required_string(object, "body", errors);
    if object.get("deliver").is_some_and(|d| !d.is_boolean()) {
        errors.push(FieldError::new(field("deliver"), "must be true or false"));
    }
}

const WEBHOOK_FIELDS: [&str; 4] = ["url", "method", "headers", "body"];
pub const WEBHOOK_METHODS: [&str; 5] = ["POST", "PUT", "PATCH", "DELETE", "GET"];

fn validate_webhook(
    object: &Map<String, Value>,
    policy: &WebhookPolicy,
    errors: &mut Vec<FieldError>,
) {
    reject_unknown(object, &WEBHOOK_FIELDS, errors);
    if let Some(url) = required_string(object, "url", errors) {
        if let Err(why) = webhook::validate_url(url, policy) {
            errors.push(FieldError::new(field("url"), why.to_string()));
        }
    }
    match object.get("method") {
        None => {}
        Some(Value::String(m)) if WEBHOOK_METHODS.contains(&m.as_str()) => {}
        Some(_) => errors.push(FieldError::new(
            field("method"),
            "must be one of: POST, PUT, PATCH, DELETE, GET",
        )),
    }
    match object.get("headers") {
        None => {}
        Some(Value::Object(headers)) => {
            for (name, value) in headers {
                let pointer = format!("{}/{}", field("headers"), pointer_token(name));
                if let Err(why) = webhook::validate_header(name, value) {
                    errors.push(FieldError::new(pointer, why));
                }
            }
        }
        Some(_) => errors.push(FieldError::new(
            field("headers"),
            "must be an object of header names to string values",
        )),
    }
}

const ARCHIVE_NAME_MAX: usize = 255;

fn validate_archive(object: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    match object.get("name") {
        None => {}
        Some(Value::String(name))
            if !name.is_empty() && name.chars().count() <= ARCHIVE_NAME_MAX => {}
        Some(_) => errors.push(FieldError::new(
            field("name"),
            "must be a string of 1-255 characters",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(kind: TaskKind, payload: Value) -> Vec<(String, String)> {
        match validate_payload(kind, &payload, &WebhookPolicy::default()) {
            Ok(()) => vec![],
            Err(e) => e.0.into_iter().map(|e| (e.pointer, e.message)).collect(),
        }
    }

    fn pointers(kind: TaskKind, payload: Value) -> Vec<String> {
        errors_of(kind, payload)
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    #[test]
    fn valid_email_addresses() {
        for ok in [
            "a@example.com",
            "first.last+tag@sub.example.co.uk",
            "!#$%&'*+-/=?^_`{|}~@x-y.io",
            "0@A.com",
            "user@xn--bcher-kva.example",
        ] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn invalid_email_addresses() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
            "a b@example.com",
            "a@-example.com",
            "a@example-.com",
            "a@example..com",
            "a@example.123",
            "ü@example.com",
            "a@[127.0.0.1]",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} should be invalid");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(EmailAddress::parse(&long_local).is_err());
        let long_total = format!("a@{}.com", "b".repeat(251));
        assert!(EmailAddress::parse(&long_total).is_err());
    }

    #[test]
    fn email_payload_requires_all_four_fields() {
        let valid = json!({"sender": "a@example.com", "recipient": "b@example.com",
                           "subject": "Hi", "body": ""});
        assert!(errors_of(TaskKind::Email, valid).is_empty());
        assert_eq!(
            pointers(TaskKind::Email, json!({})),
            [
                "/payload/sender",
                "/payload/recipient",
                "/payload/subject",
                "/payload/body"
            ]
        );
    }

    #[test]
    fn email_payload_names_each_bad_field() {
        let errs = errors_of(
            TaskKind::Email,
            json!({"sender": "nope", "recipient": 7, "subject": "", "body": "x", "cc": "c@d.io"}),
        );
        let ptrs: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            ptrs,
            [
                "/payload/cc",
                "/payload/sender",
                "/payload/recipient",
                "/payload/subject"
            ]
        );
        assert_eq!(errs[2].1, "must be a string");
        assert_eq!(errs[0].1, "is not a known field");
    }

    #[test]
    fn email_deliver_is_an_optional_boolean() {
        let with = |deliver: Value| {
            json!({"sender": "a@example.com", "recipient": "b@example.com",
                   "subject": "Hi", "body": "", "deliver": deliver})
        };
        assert!(errors_of(TaskKind::Email, with(json!(true))).is_empty());
        assert!(errors_of(TaskKind::Email, with(json!(false))).is_empty());
        for bad in [json!("true"), json!(1), json!(null), json!({})] {
            assert_eq!(
                errors_of(TaskKind::Email, with(bad.clone())),
                [(
                    "/payload/deliver".to_owned(),
                    "must be true or false".to_owned()
                )],
                "{bad}"
            );
        }
    }

    #[test]
    fn payload_must_be_an_object() {
        for kind in TaskKind::ALL {
            assert_eq!(pointers(kind, json!([1])), ["/payload"]);
        }
    }

    #[test]
    fn webhook_payload_rules() {
        assert!(errors_of(
            TaskKind::Webhook,
            json!({"url": "https://hooks.example.com/x", "method": "PUT",
                   "headers": {"X-Trace": "1"}, "body": {"any": ["json"]}})
        )
        .is_empty());
        assert_eq!(pointers(TaskKind::Webhook, json!({})), ["/payload/url"]);
        assert_eq!(
            pointers(
                TaskKind::Webhook,
                json!({"url": "http://hooks.example.com", "method": "TRACE",
                       "headers": {"Host": "x", "X-Ok": "y", "X-Num": 1}})
            ),
            [
                "/payload/url",
                "/payload/method",
                "/payload/headers/Host",
                "/payload/headers/X-Num"
            ]
        );
        assert_eq!(
            pointers(TaskKind::Webhook, json!({"url": "https://10.0.0.1/"})),
            ["/payload/url"]
        );
        assert_eq!(
            pointers(
                TaskKind::Webhook,
                json!({"url": "https://h.example", "headers": []})
            ),
            ["/payload/headers"]
        );
    }

    #[test]
    fn archive_and_noop_accept_any_object() {
        assert!(errors_of(TaskKind::Archive, json!({"name": "q3", "rows": [1, 2]})).is_empty());
        assert!(errors_of(TaskKind::Archive, json!({})).is_empty());
        assert_eq!(
            pointers(TaskKind::Archive, json!({"name": 3})),
            ["/payload/name"]
        );
        assert_eq!(
            pointers(TaskKind::Archive, json!({"name": ""})),
            ["/payload/name"]
        );
        assert!(errors_of(TaskKind::Noop, json!({"anything": true})).is_empty());
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(
            pointers(
                TaskKind::Email,
                json!({"sender": "a@b.io", "recipient": "a@b.io",
                "subject": "s", "body": "b", "a/b~c": 1})
            ),
            ["/payload/a~1b~0c"]
        );
    }
}
