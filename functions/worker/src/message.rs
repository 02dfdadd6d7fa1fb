//! What a record of the work queue holds: a work pointer, a task submission, an EventBridge
//! event (for the tenants' triggers), one of TMS's own lifecycle events (for the tenants'
//! subscriptions), or something that can never be processed.

use aws_lambda_events::event::sqs::SqsMessage;
use serde::Deserialize;
use serde_json::Value;
use tms::domain::notification::EVENT_SOURCE;
use tms::{
    parse_rfc3339, CorrelationId, Event, NewTask, Notification, Priority, Source, Submission,
    SubmissionRules, Tenant, WorkMessage, CORRELATION_ATTRIBUTE,
};

/// The system attribute that names the IAM principal that sent a message.
pub const SENDER_ID: &str = "SenderId";

#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Work(WorkMessage),
    /// Validated tasks to create: a queue submission's one (keyed by the message id unless it
    /// carries its own key), or the tasks of an event's triggers (none when nothing matched).
    Submissions(Vec<NewTask>),
    /// An event of the deployment's bus, before its triggers are matched.
    Event(Box<Event>),
    /// One of TMS's own lifecycle events (source `tms`, from the deployment's own account),
    /// before the subscriptions of its tenant are matched.
    Lifecycle(Box<Notification>),
    /// Moved to the dead-letter queue with this reason.
    Malformed(String),
    /// Cannot be judged in this invocation (the producer map cannot be read): it comes back.
    Later(String),
}

/// A task submission as producers send it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueSubmission {
    tenant: String,
    kind: String,
    payload: Value,
    idempotency_key: Option<String>,
    run_after: Option<String>,
    max_attempts: Option<u32>,
    #[serde(default)]
    priority: Priority,
}

/// The producer of a record: its `SenderId` system attribute.
pub fn sender_of(record: &SqsMessage) -> Option<&str> {
    record.attributes.get(SENDER_ID).map(String::as_str)
}

/// The correlation id of a record: its message attribute when valid, else a fresh one.
pub fn correlation_of(record: &SqsMessage) -> CorrelationId {
    CorrelationId::parse_or_generate(
        record
            .message_attributes
            .get(CORRELATION_ATTRIBUTE)
            .and_then(|a| a.string_value.as_deref()),
    )
}

/// The account a record's queue belongs to (the deployment's own): the fifth field of its
/// `eventSourceARN`, `arn:aws:sqs:<region>:<account>:<queue>`.
pub fn own_account(record: &SqsMessage) -> Option<&str> {
    record
        .event_source_arn
        .as_deref()?
        .split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
}

/// A lifecycle event is trusted only from the deployment's own account, which publishes them:
/// with source `tms` from any other account it is an impostor, dead-lettered with the reason.
fn lifecycle(record: &SqsMessage, event: &Event) -> Parsed {
    match own_account(record) {
        Some(own) if own == event.account => match Notification::from_event(event) {
            Ok(n) => Parsed::Lifecycle(Box::new(n)),
            Err(reason) => Parsed::Malformed(reason),
        },
        own => Parsed::Malformed(format!(
            "lifecycle events (source {EVENT_SOURCE}) are taken only from this deployment's \
             account ({}), not from account {}",
            own.unwrap_or("unknown: the record names no queue ARN"),
            event.account
        )),
    }
}

pub fn parse(record: &SqsMessage, rules: &SubmissionRules) -> Parsed {
    let Some(body) = record.body.as_deref() else {
        return Parsed::Malformed("the message has no body".into());
    };
    let value: Value = match serde_json::from_str(body) {
        Ok(value) => value,
        Err(e) => return Parsed::Malformed(format!("the body is not JSON: {e}")),
    };
    let Some(object) = value.as_object() else {
        return Parsed::Malformed("the body is not a JSON object".into());
    };
    if let Some(event) = Event::parse(&value) {
        return match event {
            Ok(event) if event.source == EVENT_SOURCE => lifecycle(record, &event),
            Ok(event) => Parsed::Event(Box::new(event)),
            Err(reason) => Parsed::Malformed(reason),
        };
    }
    if object.contains_key("task_id") {
        return match serde_json::from_value(value) {
            Ok(message) => Parsed::Work(message),
            Err(e) => Parsed::Malformed(format!("invalid work message: {e}")),
        };
    }
    if !object.contains_key("kind") {
        return Parsed::Malformed(
            "neither a work message {task_id, tenant, correlation_id} nor a task submission \
             {tenant, kind, payload}"
                .into(),
        );
    }
    let submission: QueueSubmission = match serde_json::from_value(value) {
        Ok(s) => s,
        Err(e) => return Parsed::Malformed(format!("invalid task submission: {e}")),
    };
    let tenant = match Tenant::parse(&submission.tenant) {
        Ok(tenant) => tenant,
        Err(e) => return Parsed::Malformed(format!("invalid task submission: {e}")),
    };
    let Some(message_id) = record.message_id.clone() else {
        return Parsed::Malformed("the message has no id to key the submission by".into());
    };
    let run_after = match submission.run_after.as_deref().map(parse_rfc3339) {
        None => None,
        Some(Some(t)) => Some(t),
        Some(None) => {
            return Parsed::Malformed(
                "invalid task submission: /run_after: must be an RFC 3339 date-time such as \
                 2026-01-31T09:30:00Z"
                    .into(),
            )
        }
    };
    let validated = Submission {
        kind: submission.kind,
        payload: submission.payload,
        idempotency_key: Some(submission.idempotency_key.unwrap_or(message_id)),
        run_after,
        max_attempts: submission.max_attempts,
        priority: submission.priority,
    }
    .validate(tenant, correlation_of(record), Source::Queue, rules);
    match validated {
        Ok(task) => Parsed::Submissions(vec![task]),
        Err(errors) => Parsed::Malformed(format!("invalid task submission: {errors}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsMessageAttribute;
    use tms::TaskKind;

    fn record(body: &str) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = Some("m-1".into());
        r.body = Some(body.into());
        r
    }

    fn reason(body: &str) -> String {
        match parse(&record(body), &SubmissionRules::default()) {
            Parsed::Malformed(reason) => reason,
            other => panic!("{body} should be malformed, got {other:?}"),
        }
    }

    #[test]
    fn a_work_pointer_is_read_as_is() {
        let body = r#"{"task_id":"0190a8e2-6b5c-7cc1-8f00-000000000001","tenant":"demo","correlation_id":"c-1"}"#;
        let Parsed::Work(m) = parse(&record(body), &SubmissionRules::default()) else {
            panic!("a work message")
        };
        assert_eq!(
            (m.tenant.as_str(), m.correlation_id.as_str()),
            ("demo", "c-1")
        );
    }

    #[test]
    fn a_submission_is_validated_and_keyed_by_the_message_id() {
        let mut r = record(r#"{"tenant":"acme","kind":"noop","payload":{"n":1}}"#);
        let mut attr = SqsMessageAttribute::default();
        attr.string_value = Some("corr-7".into());
        attr.data_type = Some("String".into());
        r.message_attributes
            .insert(CORRELATION_ATTRIBUTE.into(), attr);
        let Parsed::Submissions(mut tasks) = parse(&r, &SubmissionRules::default()) else {
            panic!("a submission")
        };
        let task = tasks.pop().unwrap();
        assert_eq!(task.kind, TaskKind::Noop);
        assert_eq!(task.tenant.as_str(), "acme");
        assert_eq!(task.idempotency_key.as_deref(), Some("m-1"));
        assert_eq!(task.correlation_id.as_str(), "corr-7");
        assert_eq!(task.source, Source::Queue);

        let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        let own_key = record(&format!(
            r#"{{"tenant":"acme","kind":"noop","payload":{{}},"idempotency_key":"k-9",
               "max_attempts":2,"run_after":"{tomorrow}"}}"#
        ));
        let Parsed::Submissions(mut tasks) = parse(&own_key, &SubmissionRules::default()) else {
            panic!("a submission")
        };
        let task = tasks.pop().unwrap();
        assert_eq!(task.idempotency_key.as_deref(), Some("k-9"));
        assert_eq!(task.max_attempts, 2);
        assert!(task.run_after.is_some());
    }

    #[test]
    fn an_eventbridge_event_is_read_as_an_event() {
        let body = r#"{"version":"0","id":"e-1","detail-type":"Order Placed","source":"shop",
            "account":"111122223333","time":"2026-12-06T10:00:00Z","region":"us-east-1",
            "resources":[],"detail":{"orderId":"o-1"}}"#;
        let Parsed::Event(event) = parse(&record(body), &SubmissionRules::default()) else {
            panic!("an event")
        };
        assert_eq!(
            (event.id.as_str(), event.account.as_str()),
            ("e-1", "111122223333")
        );
        assert!(reason(r#"{"source":"shop","detail-type":"x"}"#)
            .starts_with("invalid EventBridge event"));
    }

    #[test]
    fn a_lifecycle_event_is_taken_only_from_the_deployments_own_account() {
        let body = |account: &str| {
            format!(
                r#"{{"version":"0","id":"e-2","detail-type":"Task Succeeded","source":"tms",
                "account":"{account}","time":"2026-12-06T10:00:00Z","region":"us-east-1",
                "resources":[],"detail":{{"event_id":"0190a8e2-6b5c-7cc1-8f00-000000000002",
                "tenant":"acme","task_id":"0190a8e2-6b5c-7cc1-8f00-000000000001"}}}}"#
            )
        };
        let mut own = record(&body("111122223333"));
        own.event_source_arn = Some("arn:aws:sqs:us-east-1:111122223333:tms-work".into());
        let Parsed::Lifecycle(n) = parse(&own, &SubmissionRules::default()) else {
            panic!("a lifecycle event")
        };
        assert_eq!(n.tenant.as_str(), "acme");
        let mut foreign = record(&body("999988887777"));
        foreign.event_source_arn = own.event_source_arn.clone();
        let Parsed::Malformed(reason) = parse(&foreign, &SubmissionRules::default()) else {
            panic!("an impostor is malformed")
        };
        assert!(
            reason.contains("111122223333") && reason.contains("999988887777"),
            "{reason}"
        );
        assert!(matches!(
            parse(&record(&body("111122223333")), &SubmissionRules::default()),
            Parsed::Malformed(_)
        ));
    }

    #[test]
    fn anything_else_is_malformed_with_a_reason() {
        assert!(reason("not json").starts_with("the body is not JSON"));
        assert_eq!(reason("[1]"), "the body is not a JSON object");
        assert!(reason(r#"{"hello":1}"#).starts_with("neither a work message"));
        assert!(
            reason(r#"{"task_id":"nope","tenant":"demo","correlation_id":"c"}"#)
                .starts_with("invalid work message")
        );
        assert!(
            reason(r#"{"tenant":"a","kind":"noop","payload":{},"extra":1}"#)
                .contains("unknown field")
        );
        assert!(reason(r#"{"tenant":"a/b","kind":"noop","payload":{}}"#).contains("/tenant"));
        assert!(
            reason(r#"{"tenant":"a","kind":"notification","payload":{}}"#)
                .contains("created by TMS only"),
            "only TMS creates notification tasks"
        );
        let invalid = reason(r#"{"tenant":"a","kind":"email","payload":{"sender":"x"}}"#);
        assert!(
            invalid.contains("/payload/sender") && invalid.contains("/payload/recipient"),
            "{invalid}"
        );
        for far in [
            "-5000-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            let reason = reason(&format!(
                r#"{{"tenant":"a","kind":"noop","payload":{{}},"run_after":"{far}"}}"#
            ));
            assert!(reason.contains("/run_after"), "{far}: {reason}");
        }
        let mut no_body = record("");
        no_body.body = None;
        assert!(matches!(
            parse(&no_body, &SubmissionRules::default()),
            Parsed::Malformed(_)
        ));
    }
}
