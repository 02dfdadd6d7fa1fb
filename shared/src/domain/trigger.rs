//! Event triggers: a tenant's match on EventBridge events (`source`, `detail-type`, optionally
//! one value of `detail`) and the task each matching event creates, its payload taking values
//! from the event (`{"$event": "/detail/orderId"}`).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::ids::{CorrelationId, Tenant, TriggerId};
use super::submission::{NewTask, Source, Submission, SubmissionRules};
use super::validation::{FieldError, ValidationErrors};

/// The key of a payload value taken from the event: `{"$event": "<JSON pointer>"}`.
pub const EVENT_VALUE_KEY: &str = "$event";
/// The longest `source` and `detail-type` a trigger takes.
pub const TRIGGER_TEXT_MAX: usize = 256;
/// The longest name of a trigger.
pub const TRIGGER_NAME_MAX: usize = 128;

/// An EventBridge event, as a rule delivers it to a queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    pub id: String,
    pub source: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// The account that put the event: whom the producer map authorises.
    pub account: String,
    pub time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub detail: Value,
    /// The event as it arrived, for the template's pointers.
    #[serde(skip)]
    pub raw: Value,
}

impl Event {
    /// The event in `value`, when it has an EventBridge event's shape (`version`, `id`,
    /// `source`, `detail-type`, `account`, `detail`).
    pub fn parse(value: &Value) -> Option<Result<Self, String>> {
        let object = value.as_object()?;
        if !(object.contains_key("detail-type") && object.contains_key("source")) {
            return None;
        }
        Some(
            serde_json::from_value::<Self>(value.clone())
                .map_err(|e| format!("invalid EventBridge event: {e}"))
                .and_then(|mut event| {
                    if event.id.is_empty() || event.id.len() > 128 {
                        return Err(
                            "invalid EventBridge event: the id is not 1-128 characters".into()
                        );
                    }
                    event.raw = value.clone();
                    Ok(event)
                }),
        )
    }
}

/// An equality on one value of an event's `detail`.
#[derive(Debug, Clone, PartialEq)]
pub struct DetailMatch {
    /// A JSON pointer into `detail` (`/status`).
    pub pointer: String,
    pub equals: Value,
}

/// A trigger as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub id: TriggerId,
    pub tenant: Tenant,
    pub name: String,
    pub event_source: String,
    pub detail_type: String,
    pub detail_match: Option<DetailMatch>,
    pub kind: String,
    /// The payload template.
    pub payload: Value,
    pub max_attempts: u32,
    pub created_at: DateTime<Utc>,
}

fn text(pointer: &str, value: &str, what: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() || value.chars().count() > max {
        Err(FieldError::new(
            pointer,
            format!("{what} must be 1-{max} characters"),
        ))
    } else {
        Ok(())
    }
}

/// Whether `pointer` is a JSON pointer (RFC 6901): empty, or `/`-separated tokens with `~`
/// escaped as `~0` and `~1`.
fn is_pointer(pointer: &str) -> bool {
    (pointer.is_empty() || pointer.starts_with('/'))
        && pointer
            .split('~')
            .skip(1)
            .all(|rest| rest.starts_with('0') || rest.starts_with('1'))
}

/// The pointers a template takes event values from, with where each stands in the template.
fn event_values(template: &Value, at: &str, out: &mut Vec<(String, Value)>) {
    match template {
        Value::Object(map) if map.len() == 1 && map.contains_key(EVENT_VALUE_KEY) => {
            out.push((at.to_owned(), map[EVENT_VALUE_KEY].clone()));
        }
        Value::Object(map) => {
            for (key, value) in map {
                let token = key.replace('~', "~0").replace('/', "~1");
                event_values(value, &format!("{at}/{token}"), out);
            }
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                event_values(value, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

impl Trigger {
    /// Checks a trigger before it is stored: the texts, the detail match's pointer, the
    /// template's `$event` pointers, and that the template with sample values is a valid
    /// payload of its kind is left to the events themselves (the values are only known then).
    ///
    /// # Errors
    /// Every invalid field, by JSON pointer.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        for (pointer, value, what, max) in [
            ("/name", &self.name, "the name", TRIGGER_NAME_MAX),
            (
                "/source",
                &self.event_source,
                "the event source",
                TRIGGER_TEXT_MAX,
            ),
            (
                "/detail_type",
                &self.detail_type,
                "the detail-type",
                TRIGGER_TEXT_MAX,
            ),
        ] {
            errors.extend(text(pointer, value, what, max).err());
        }
        // NOTE: TMS's own lifecycle events go to subscriptions, never to triggers: a trigger's
        // task would publish an event of its own, which could trigger it again.
        if self.event_source == super::notification::EVENT_SOURCE {
            errors.push(FieldError::new(
                "/source",
                "tms is the source of TMS's own lifecycle events, which triggers do not take; \
                 subscribe to them with /v1/subscriptions",
            ));
        }
        if let Some(m) = &self.detail_match {
            if !is_pointer(&m.pointer) {
                errors.push(FieldError::new(
                    "/detail_match/pointer",
                    "must be a JSON pointer such as /status",
                ));
            }
        }
        if let Err(e) = super::TaskKind::parse_submittable(&self.kind) {
            errors.push(FieldError::new("/task/kind", e.message));
        }
        if !self.payload.is_object() {
            errors.push(FieldError::new("/task/payload", "must be a JSON object"));
        }
        let mut values = Vec::new();
        event_values(&self.payload, "/task/payload", &mut values);
        for (at, pointer) in values {
            if !pointer.as_str().is_some_and(is_pointer) {
                errors.push(FieldError::new(
                    at,
                    "an {\"$event\": ...} value must be a JSON pointer into the event, such as /detail/orderId",
                ));
            }
        }
        if !(1..=super::MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            errors.push(FieldError::new(
                "/task/max_attempts",
                format!("must be from 1 to {}", super::MAX_ATTEMPTS_LIMIT),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }

    /// Whether the event is one this trigger waits for.
    pub fn matches(&self, event: &Event) -> bool {
        self.event_source == event.source
            && self.detail_type == event.detail_type
            && self
                .detail_match
                .as_ref()
                .is_none_or(|m| event.detail.pointer(&m.pointer) == Some(&m.equals))
    }

    /// The task the event creates: the template's `$event` values taken from the event, the
    /// payload validated for the kind, keyed `event:{event id}:{trigger id}` so a redelivered
    /// event creates nothing twice.
    ///
    /// # Errors
    /// Why no task can be made: a pointer the event does not have, or a payload the kind
    /// refuses.
    pub fn task_for(&self, event: &Event, rules: &SubmissionRules) -> Result<NewTask, String> {
        let payload = render(&self.payload, &event.raw)?;
        Submission {
            kind: self.kind.clone(),
            payload,
            idempotency_key: Some(format!("event:{}:{}", event.id, self.id)),
            run_after: None,
            max_attempts: Some(self.max_attempts),
            priority: super::Priority::Normal,
        }
        .validate(
            self.tenant.clone(),
            CorrelationId::parse_or_generate(Some(&format!("event-{}", event.id))),
            Source::Event {
                trigger_id: self.id,
                event_id: event.id.clone(),
            },
            rules,
        )
        .map_err(|e| format!("the task of trigger {} is invalid: {e}", self.name))
    }
}

/// `template` with every `{"$event": pointer}` replaced by the event's value there.
///
/// # Errors
/// The first pointer the event has no value at.
pub fn render(template: &Value, event: &Value) -> Result<Value, String> {
    match template {
        Value::Object(map) if map.len() == 1 && map.contains_key(EVENT_VALUE_KEY) => {
            let pointer = map[EVENT_VALUE_KEY].as_str().unwrap_or_default();
            event
                .pointer(pointer)
                .cloned()
                .ok_or_else(|| format!("the event has no value at {pointer}"))
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), render(v, event)?)))
            .collect::<Result<Map<String, Value>, String>>()
            .map(Value::Object),
        Value::Array(items) => items
            .iter()
            .map(|v| render(v, event))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Event {
        Event::parse(&json!({
            "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "Order Placed", "source": "shop.orders", "account": "111122223333",
            "time": "2026-12-06T10:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {"orderId": "o-42", "status": "paid", "lines": [{"sku": "a/b~c"}]}
        }))
        .unwrap()
        .unwrap()
    }

    fn trigger(payload: Value, detail_match: Option<DetailMatch>) -> Trigger {
        Trigger {
            id: TriggerId::new(),
            tenant: Tenant::parse("acme").unwrap(),
            name: "paid orders".into(),
            event_source: "shop.orders".into(),
            detail_type: "Order Placed".into(),
            detail_match,
            kind: "noop".into(),
            payload,
            max_attempts: 3,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn events_are_recognised_by_their_shape() {
        assert!(Event::parse(&json!({"task_id": "x"})).is_none());
        assert!(Event::parse(&json!({"source": "a", "detail-type": "b"}))
            .unwrap()
            .is_err());
        let e = event();
        assert_eq!(
            (e.source.as_str(), e.account.as_str()),
            ("shop.orders", "111122223333")
        );
    }

    #[test]
    fn a_trigger_matches_source_detail_type_and_its_detail_value() {
        let e = event();
        assert!(trigger(json!({}), None).matches(&e));
        let paid = |equals: Value| {
            Some(DetailMatch {
                pointer: "/status".into(),
                equals,
            })
        };
        assert!(trigger(json!({}), paid(json!("paid"))).matches(&e));
        assert!(!trigger(json!({}), paid(json!("refunded"))).matches(&e));
        let mut other = trigger(json!({}), None);
        other.detail_type = "Order Cancelled".into();
        assert!(!other.matches(&e));
    }

    #[test]
    fn the_template_takes_values_from_the_event() {
        let t = trigger(
            json!({"order": {"$event": "/detail/orderId"}, "first": {"$event": "/detail/lines/0/sku"},
                   "fixed": 1, "nested": [{"at": {"$event": "/time"}}]}),
            None,
        );
        let task = t.task_for(&event(), &SubmissionRules::default()).unwrap();
        assert_eq!(
            task.payload,
            json!({"order": "o-42", "first": "a/b~c", "fixed": 1,
                   "nested": [{"at": "2026-12-06T10:00:00Z"}]})
        );
        assert_eq!(
            task.idempotency_key.as_deref(),
            Some(format!("event:6a7e8feb-b491-4cf7-a9f1-bf3703467718:{}", t.id).as_str())
        );
        assert_eq!(task.max_attempts, 3);
        assert!(matches!(task.source, Source::Event { .. }));
        let missing = trigger(json!({"x": {"$event": "/detail/nope"}}), None);
        assert!(missing
            .task_for(&event(), &SubmissionRules::default())
            .unwrap_err()
            .contains("/detail/nope"));
    }

    #[test]
    fn invalid_triggers_name_each_field() {
        let mut t = trigger(json!({"a": {"$event": "detail"}}), None);
        t.kind = "fax".into();
        t.name = String::new();
        t.max_attempts = 0;
        t.detail_match = Some(DetailMatch {
            pointer: "status".into(),
            equals: json!(1),
        });
        let errors = t.validate().unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/name",
                "/detail_match/pointer",
                "/task/kind",
                "/task/payload/a",
                "/task/max_attempts"
            ]
        );
        assert!(trigger(json!({"ok": {"$event": "/id"}}), None)
            .validate()
            .is_ok());
        let mut own = trigger(json!({}), None);
        own.event_source = "tms".into();
        own.kind = "notification".into();
        let errors = own.validate().unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/source", "/task/kind"]);
    }
}
