//! A submission (from the API, a queue message or an import row) and its validation into a
//! [`NewTask`] ready to be stored.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::flow::Priority;
use super::ids::{CorrelationId, ImportId, ScheduleId, TaskId, Tenant, TriggerId};
use super::kind::TaskKind;
use super::validation::{pointer_token, validate_payload, FieldError, ValidationErrors};
use super::webhook::WebhookPolicy;

pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const MAX_ATTEMPTS_LIMIT: u32 = 20;
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// The one idempotency-key rule (API header and body, queue submissions, import rows): 1-255
/// visible ASCII characters (`!` to `~`), which every transport carries unchanged.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;
/// [`validate_idempotency_key`] as a regular expression, for the OpenAPI document.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";
/// The earliest `run_after` accepted: anything earlier is no more due than this, and chrono
/// parses instants (signed, five-digit years) PostgreSQL cannot store.
pub const RUN_AFTER_EARLIEST: &str = "1970-01-01T00:00:00Z";
/// The latest `run_after` accepted: the last instant with a four-digit year, as RFC 3339 writes
/// them.
pub const RUN_AFTER_LATEST: &str = "9999-12-31T23:59:59.999999Z";
/// [`check_run_after`]'s bounds as a regular expression on the RFC 3339 text, for the OpenAPI
/// document: a four-digit year from 1970.
pub const RUN_AFTER_PATTERN: &str = "^(19[7-9][0-9]|[2-9][0-9]{3})-";

/// The one rule that bounds `run_after`, wherever a task comes from (API, import row, queue
/// message): from [`RUN_AFTER_EARLIEST`] to [`RUN_AFTER_LATEST`].
///
/// # Errors
/// A [`FieldError`] at `/run_after` naming the bounds.
pub fn check_run_after(run_after: DateTime<Utc>) -> Result<(), FieldError> {
    let year = run_after.year();
    if !(1970..=9999).contains(&year) {
        return Err(FieldError::new(
            "/run_after",
            format!("must be between {RUN_AFTER_EARLIEST} and {RUN_AFTER_LATEST}"),
        ));
    }
    Ok(())
}

/// What a submission is validated against: the webhook targets the deployment allows. Built
/// once from the configuration; the API, the importer and the worker pass the same rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubmissionRules {
    pub webhook: WebhookPolicy,
}

/// Where a task came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Source {
    Api,
    Import {
        import_id: ImportId,
        line: u64,
    },
    Queue,
    /// One fire of a schedule.
    Schedule {
        schedule_id: ScheduleId,
        fire_time: DateTime<Utc>,
    },
    /// An event a trigger matched.
    Event {
        trigger_id: TriggerId,
        event_id: String,
    },
    /// A delivery of lifecycle event `event_id` to a subscription (named in the payload).
    Subscription {
        event_id: String,
    },
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn kind(&self) -> SourceKind {
        match self {
            Self::Api => SourceKind::Api,
            Self::Import { .. } => SourceKind::Import,
            Self::Queue => SourceKind::Queue,
            Self::Schedule { .. } => SourceKind::Schedule,
            Self::Event { .. } => SourceKind::Event,
            Self::Subscription { .. } => SourceKind::Subscription,
        }
    }
}

/// Where tasks come from, without the details of each source (a filter of task lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Api,
    Import,
    Queue,
    Schedule,
    Event,
    Subscription,
}

impl SourceKind {
    pub const ALL: [Self; 6] = [
        Self::Api,
        Self::Import,
        Self::Queue,
        Self::Schedule,
        Self::Event,
        Self::Subscription,
    ];

    /// # Errors
    /// A [`FieldError`] at `/source` naming the sources there are.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                FieldError::new(
                    "/source",
                    "must be one of: api, import, queue, schedule, event, subscription",
                )
            })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Import => "import",
            Self::Queue => "queue",
            Self::Schedule => "schedule",
            Self::Event => "event",
            Self::Subscription => "subscription",
        }
    }
}

/// A request to create a task, not yet validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub kind: String,
    pub payload: Value,
    pub idempotency_key: Option<String>,
    pub run_after: Option<DateTime<Utc>>,
    pub max_attempts: Option<u32>,
    pub priority: Priority,
}

/// A validated task, ready to be inserted as `pending`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub id: TaskId,
    pub tenant: Tenant,
    pub kind: TaskKind,
    pub payload: Value,
    pub max_attempts: u32,
    /// `None`: due at once (the database's `now()`).
    pub run_after: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    /// SHA-256 of the canonical request, to tell a replay from a reused key.
    pub request_hash: [u8; 32],
    pub correlation_id: CorrelationId,
    pub source: Source,
    pub priority: Priority,
}

impl Submission {
    /// Validates every field, collecting all errors.
    ///
    /// # Errors
    /// Each invalid field, as a JSON Pointer into the submission.
    pub fn validate(
        self,
        tenant: Tenant,
        correlation_id: CorrelationId,
        source: Source,
        rules: &SubmissionRules,
    ) -> Result<NewTask, ValidationErrors> {
        let mut errors = Vec::new();
        let kind = TaskKind::parse_submittable(&self.kind)
            .map_err(|e| errors.push(e))
            .ok();
        let payload_size = serde_json::to_vec(&self.payload).map_or(0, |v| v.len());
        if payload_size > MAX_PAYLOAD_BYTES {
            errors.push(FieldError::new(
                "/payload",
                format!("must be at most {MAX_PAYLOAD_BYTES} bytes as JSON, is {payload_size}"),
            ));
        } else if let Some(pointer) = first_nul(&self.payload, "/payload") {
            errors.push(FieldError::new(pointer, "must not contain NUL characters"));
        } else if let Some(kind) = kind {
            if let Err(e) = validate_payload(kind, &self.payload, &rules.webhook) {
                errors.extend(e.0);
            }
        }
        let max_attempts = self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
            errors.push(FieldError::new(
                "/max_attempts",
                format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
            ));
        }
        if let Some(key) = &self.idempotency_key {
            if let Err(e) = validate_idempotency_key(key) {
                errors.push(e);
            }
        }
        if let Some(run_after) = self.run_after {
            if let Err(e) = check_run_after(run_after) {
                errors.push(e);
            }
        }
        match kind {
            Some(kind) if errors.is_empty() => {
                let request_hash = request_hash_with_priority(
                    kind,
                    &self.payload,
                    max_attempts,
                    self.run_after,
                    self.priority,
                );
                Ok(NewTask {
                    id: TaskId::new(),
                    tenant,
                    kind,
                    payload: self.payload,
                    max_attempts,
                    run_after: self.run_after,
                    idempotency_key: self.idempotency_key,
                    request_hash,
                    correlation_id,
                    source,
                    priority: self.priority,
                })
            }
            _ => Err(ValidationErrors(errors)),
        }
    }
}

/// The pointer of the first string (value or key) holding a NUL character, which PostgreSQL
/// cannot store in JSON.
fn first_nul(value: &Value, pointer: &str) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(pointer.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_nul(v, &format!("{pointer}/{i}"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let child = format!("{pointer}/{}", pointer_token(k));
            if k.contains('\0') {
                Some(child)
            } else {
                first_nul(v, &child)
            }
        }),
        _ => None,
    }
}

/// Parses an RFC 3339 date-time strictly: `T` separator, seconds and an offset required.
pub fn parse_rfc3339(raw: &str) -> Option<DateTime<Utc>> {
    let b = raw.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return None;
    }
    let mut rest = &raw[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset_ok = matches!(rest, "Z" | "z")
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':'
            && rest[1..3].bytes().all(|c| c.is_ascii_digit())
            && rest[4..6].bytes().all(|c| c.is_ascii_digit()));
    if !offset_ok {
        return None;
    }
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An idempotency key is 1-255 visible ASCII characters (`!` to `~`): see
/// [`IDEMPOTENCY_KEY_MAX`].
///
/// # Errors
/// A [`FieldError`] at `/idempotency_key`.
pub fn validate_idempotency_key(key: &str) -> Result<(), FieldError> {
    if is_idempotency_key(key) {
        Ok(())
    } else {
        Err(FieldError::new(
            "/idempotency_key",
            "must be 1-255 visible ASCII characters ('!' to '~', no spaces)",
        ))
    }
}

pub(crate) fn is_idempotency_key(key: &str) -> bool {
    (1..=IDEMPOTENCY_KEY_MAX).contains(&key.len())
        && key.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

/// SHA-256 of the request in a canonical form (object keys sorted at every level), so a replay
/// with the same content but another key order or whitespace matches.
pub fn request_hash(
    kind: TaskKind,
    payload: &Value,
    max_attempts: u32,
    run_after: Option<DateTime<Utc>>,
) -> [u8; 32] {
    request_hash_with_priority(kind, payload, max_attempts, run_after, Priority::Normal)
}

/// [`request_hash`] of a request with a priority. A `normal` priority adds nothing, so requests
/// hashed before priorities existed still match their replays.
pub fn request_hash_with_priority(
    kind: TaskKind,
    payload: &Value,
    max_attempts: u32,
    run_after: Option<DateTime<Utc>>,
    priority: Priority,
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(max_attempts.to_be_bytes());
    hasher.update(
        run_after
            .map(|t| t.timestamp_micros().to_string())
            .unwrap_or_default(),
    );
    hasher.update([0]);
    let mut canonical = String::new();
    write_canonical(payload, &mut canonical);
    hasher.update(canonical.as_bytes());
    if priority != Priority::Normal {
        hasher.update([0]);
        hasher.update(priority.as_str().as_bytes());
    }
    hasher.finalize().into()
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn submission(kind: &str, payload: Value) -> Submission {
        Submission {
            kind: kind.into(),
            payload,
            idempotency_key: None,
            run_after: None,
            max_attempts: None,
            priority: Priority::Normal,
        }
    }

    fn validate(s: Submission) -> Result<NewTask, ValidationErrors> {
        s.validate(
            Tenant::parse("demo").unwrap(),
            CorrelationId::generate(),
            Source::Api,
            &SubmissionRules::default(),
        )
    }

    fn pointers(s: Submission) -> Vec<String> {
        validate(s)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.pointer)
            .collect()
    }

    #[test]
    fn a_valid_submission_becomes_a_new_task() {
        let task = validate(submission("noop", json!({}))).unwrap();
        assert_eq!(task.kind, TaskKind::Noop);
        assert_eq!(task.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(task.id.as_uuid().get_version_num(), 7);
    }

    #[test]
    fn every_invalid_field_is_named() {
        let mut s = submission("email", json!({"sender": "x"}));
        s.max_attempts = Some(21);
        s.idempotency_key = Some(String::new());
        assert_eq!(
            pointers(s),
            [
                "/payload/sender",
                "/payload/recipient",
                "/payload/subject",
                "/payload/body",
                "/max_attempts",
                "/idempotency_key"
            ]
        );
        assert_eq!(pointers(submission("fax", json!({}))), ["/kind"]);
        assert_eq!(
            pointers(submission("notification", json!({}))),
            ["/kind"],
            "only TMS creates notification tasks"
        );
        let mut zero = submission("noop", json!({}));
        zero.max_attempts = Some(0);
        assert_eq!(pointers(zero), ["/max_attempts"]);
    }

    #[test]
    fn nul_characters_are_refused_where_they_are() {
        assert_eq!(
            pointers(submission("noop", json!({"a": {"b": ["ok", "x\u{0}y"]}}))),
            ["/payload/a/b/1"]
        );
        assert_eq!(
            pointers(submission("noop", json!({"k\u{0}": 1}))),
            ["/payload/k\u{0}"]
        );
        let mut keyed = submission("noop", json!({}));
        keyed.idempotency_key = Some("a\u{0}b".into());
        assert_eq!(pointers(keyed), ["/idempotency_key"]);
    }

    #[test]
    fn payload_size_is_limited() {
        let big = "x".repeat(MAX_PAYLOAD_BYTES);
        assert_eq!(
            pointers(submission("noop", json!({ "b": big }))),
            ["/payload"]
        );
        let fits = "x".repeat(MAX_PAYLOAD_BYTES - 10);
        assert!(validate(submission("noop", json!({ "b": fits }))).is_ok());
    }

    #[test]
    fn one_idempotency_key_rule() {
        for ok in ["a", "order-1:2/3#x", &"k".repeat(255), "!~"] {
            assert!(validate_idempotency_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " lead",
            "with space",
            "tab\t",
            "ünï",
            &"k".repeat(256),
            "nul\u{0}",
        ] {
            assert!(validate_idempotency_key(bad).is_err(), "{bad:?}");
        }
        let pattern = regex::Regex::new(IDEMPOTENCY_KEY_PATTERN).unwrap();
        for key in [
            "a",
            "x y",
            &"k".repeat(255),
            &"k".repeat(256),
            "é",
            "a\u{7f}",
        ] {
            assert_eq!(
                pattern.is_match(key),
                validate_idempotency_key(key).is_ok(),
                "{key:?}"
            );
        }
    }

    #[test]
    fn run_after_is_bounded_by_one_window() {
        // chrono parses what the strict API parser refuses (signed years): the window must
        // still hold for every instant a transport may hand over.
        let at = |raw: &str| raw.parse::<DateTime<Utc>>().unwrap();
        let pattern = regex::Regex::new(RUN_AFTER_PATTERN).unwrap();
        for edge in [
            RUN_AFTER_EARLIEST,
            RUN_AFTER_LATEST,
            "2026-12-02T10:00:00+01:00",
        ] {
            assert!(check_run_after(at(edge)).is_ok(), "{edge}");
            assert!(pattern.is_match(edge), "{edge}");
        }
        for far in [
            "-5000-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "+10000-01-01T00:00:00Z",
            "+200000-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
        ] {
            let err = check_run_after(at(far)).unwrap_err();
            assert_eq!(err.pointer, "/run_after");
            assert!(err.message.contains(RUN_AFTER_EARLIEST), "{}", err.message);
            assert!(!pattern.is_match(far), "{far}");
        }
        let mut s = submission("noop", json!({}));
        s.run_after = Some(at("-5000-01-01T00:00:00Z"));
        assert_eq!(pointers(s), ["/run_after"]);
    }

    #[test]
    fn request_hash_ignores_key_order_but_not_content() {
        let a: Value =
            serde_json::from_str(r#"{"a":1,"b":{"y":[1,{"q":2,"p":1}],"x":"s"}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"b":{"x":"s","y":[1,{"p":1,"q":2}]},"a":1}"#).unwrap();
        let c: Value =
            serde_json::from_str(r#"{"b":{"x":"s","y":[{"p":1,"q":2},1]},"a":1}"#).unwrap();
        let h = |v: &Value| request_hash(TaskKind::Noop, v, 5, None);
        assert_eq!(h(&a), h(&b));
        assert_ne!(h(&a), h(&c));
        assert_ne!(h(&a), request_hash(TaskKind::Archive, &a, 5, None));
        assert_ne!(h(&a), request_hash(TaskKind::Noop, &a, 4, None));
        assert_ne!(h(&a), request_hash(TaskKind::Noop, &a, 5, Some(Utc::now())));
        let with = |p| request_hash_with_priority(TaskKind::Noop, &a, 5, None, p);
        assert_eq!(
            h(&a),
            with(Priority::Normal),
            "the hash of a normal request is unchanged"
        );
        assert_ne!(h(&a), with(Priority::High));
    }
}
