//! Webhook subscriptions (SPEC §3 "Notifications"): a tenant's URL that receives the tenant's
//! lifecycle events, each event one `notification` task, signed per the Standard Webhooks
//! specification; and the signing secrets (`whsec_` and the base64 of random bytes) of
//! subscriptions and of a tenant's `webhook` tasks, rotated with an overlap during which the
//! new and the replaced secret both sign.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use uuid::Uuid;

use super::ids::{CorrelationId, SubscriptionId, TaskId, Tenant};
use super::kind::TaskKind;
use super::notification::{Notification, EVENT_TYPES};
use super::submission::{request_hash, NewTask, Source};
use super::validation::{FieldError, ValidationErrors};
use super::webhook::{validate_url, WebhookPolicy};

/// What every secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";
/// The random bytes of a new secret (the specification asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;
/// How long a replaced secret keeps signing after a rotation.
pub const ROTATION_OVERLAP: Duration = Duration::hours(24);
/// The attempts of one delivery: with the worker's backoff (by default doubling from 2 s up to
/// an hour apart) a receiver may be down for hours without losing an event.
pub const DELIVERY_MAX_ATTEMPTS: u32 = 20;

/// The Standard Webhooks headers.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// A signing secret, `whsec_` and the base64 of its key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    text: String,
    key: Vec<u8>,
}

impl SigningSecret {
    /// A new secret of [`SECRET_BYTES`] random bytes.
    pub fn generate() -> Self {
        let mut key = vec![0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self {
            text: format!("{SECRET_PREFIX}{}", STANDARD.encode(&key)),
            key,
        }
    }

    /// A secret as stored or shown.
    ///
    /// # Errors
    /// When `raw` is not `whsec_` and the base64 of 24 to 64 bytes.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let key = raw
            .strip_prefix(SECRET_PREFIX)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .ok_or("a signing secret is whsec_ and the base64 of its key")?;
        if !(24..=64).contains(&key.len()) {
            return Err("a signing secret's key is 24 to 64 bytes");
        }
        Ok(Self {
            text: raw.to_owned(),
            key,
        })
    }

    /// The secret as the tenant receives it once, and as the store keeps it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// `v1,` and the base64 of the HMAC-SHA256 of `{id}.{timestamp}.{body}` under the key.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

/// The secrets that sign: the current one and, until `previous_until`, the one it replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKeys {
    pub current: SigningSecret,
    pub previous: Option<SigningSecret>,
    pub previous_until: Option<DateTime<Utc>>,
}

impl SigningKeys {
    /// A new secret and no other.
    pub fn generate() -> Self {
        Self {
            current: SigningSecret::generate(),
            previous: None,
            previous_until: None,
        }
    }

    /// A new current secret; the current one keeps signing for [`ROTATION_OVERLAP`] (one
    /// replaced earlier stops at once).
    #[must_use]
    pub fn rotated(&self, now: DateTime<Utc>) -> Self {
        Self {
            current: SigningSecret::generate(),
            previous: Some(self.current.clone()),
            previous_until: Some(now + ROTATION_OVERLAP),
        }
    }

    /// The secrets that sign at `now`, the current one first.
    pub fn active(&self, now: DateTime<Utc>) -> impl Iterator<Item = &SigningSecret> {
        let previous = self
            .previous
            .as_ref()
            .filter(|_| self.previous_until.is_some_and(|until| now < until));
        std::iter::once(&self.current).chain(previous)
    }

    /// Until when the replaced secret signs, if it still does at `now`.
    pub fn overlap_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.previous_until
            .filter(|until| self.previous.is_some() && now < *until)
    }

    /// The three Standard Webhooks headers of a message `id` with `body`, sent at `at`: one
    /// `v1,` signature per active secret, space-separated.
    pub fn headers(&self, id: &str, at: DateTime<Utc>, body: &[u8]) -> [(&'static str, String); 3] {
        let timestamp = at.timestamp();
        let signatures: Vec<String> = self
            .active(at)
            .map(|secret| secret.sign(id, timestamp, body))
            .collect();
        [
            (HEADER_ID, id.to_owned()),
            (HEADER_TIMESTAMP, timestamp.to_string()),
            (HEADER_SIGNATURE, signatures.join(" ")),
        ]
    }
}

/// The secret that signs a tenant's `webhook` tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSigning {
    pub tenant: Tenant,
    pub keys: SigningKeys,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The payload of a `notification` task: which subscription receives which event, and the
/// body it is sent (the Standard Webhooks payload `{"type", "timestamp", "data"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    pub subscription_id: SubscriptionId,
    /// The event's stable id: the `webhook-id` of every attempt.
    pub event_id: String,
    pub event: Value,
}

/// The fields a client sets on a subscription, not yet validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubscriptionFields {
    pub url: String,
    pub event_types: Vec<String>,
    /// `None`: events of every kind.
    pub kinds: Option<Vec<String>>,
}

/// A change to a subscription: each field given replaces the stored one; `kinds: Some(None)`
/// removes the kind filter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubscriptionPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub kinds: Option<Option<Vec<String>>>,
}

/// A tenant's subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub tenant: Tenant,
    pub url: String,
    /// Detail-types of [`EVENT_TYPES`], at least one.
    pub event_types: Vec<String>,
    /// Only the events of tasks of these kinds (import events carry no kind and always pass);
    /// `None`: every kind.
    pub kinds: Option<Vec<TaskKind>>,
    pub keys: SigningKeys,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Items of `list` (at `pointer`) that are not unique.
fn duplicates<T: PartialEq>(list: &[T], pointer: &str, errors: &mut Vec<FieldError>) {
    for (i, item) in list.iter().enumerate() {
        if list[..i].contains(item) {
            errors.push(FieldError::new(format!("{pointer}/{i}"), "is listed twice"));
        }
    }
}

struct Valid {
    url: String,
    event_types: Vec<String>,
    kinds: Option<Vec<TaskKind>>,
}

impl SubscriptionFields {
    fn validate(self, policy: &WebhookPolicy) -> Result<Valid, ValidationErrors> {
        let mut errors = Vec::new();
        if let Err(why) = validate_url(&self.url, policy) {
            errors.push(FieldError::new("/url", why.to_string()));
        }
        if self.event_types.is_empty() {
            errors.push(FieldError::new(
                "/event_types",
                "must name at least one event type",
            ));
        }
        for (i, t) in self.event_types.iter().enumerate() {
            if !EVENT_TYPES.contains(&t.as_str()) {
                errors.push(FieldError::new(
                    format!("/event_types/{i}"),
                    format!("must be one of: {}", EVENT_TYPES.join(", ")),
                ));
            }
        }
        duplicates(&self.event_types, "/event_types", &mut errors);
        let kinds = self.kinds.map(|raw| {
            if raw.is_empty() {
                errors.push(FieldError::new(
                    "/kinds",
                    "must name at least one kind, or be left out for every kind",
                ));
            }
            duplicates(&raw, "/kinds", &mut errors);
            raw.iter()
                .enumerate()
                .filter_map(|(i, k)| match TaskKind::parse_submittable(k) {
                    Ok(kind) => Some(kind),
                    Err(_) if k == TaskKind::Notification.as_str() => {
                        errors.push(FieldError::new(
                            format!("/kinds/{i}"),
                            "notification tasks publish no lifecycle events; use one of: email, webhook, archive, noop",
                        ));
                        None
                    }
                    Err(e) => {
                        errors.push(FieldError::new(format!("/kinds/{i}"), e.message));
                        None
                    }
                })
                .collect()
        });
        if errors.is_empty() {
            Ok(Valid {
                url: self.url,
                event_types: self.event_types,
                kinds,
            })
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

impl Subscription {
    /// A new subscription of `tenant`, with a new signing secret.
    ///
    /// # Errors
    /// Every invalid field, by JSON pointer: the URL by the webhook kind's rules (the SSRF
    /// rules apply again at each delivery), event types of [`EVENT_TYPES`], kinds that publish
    /// events.
    pub fn create(
        tenant: Tenant,
        fields: SubscriptionFields,
        policy: &WebhookPolicy,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationErrors> {
        let valid = fields.validate(policy)?;
        Ok(Self {
            id: SubscriptionId::new(),
            tenant,
            url: valid.url,
            event_types: valid.event_types,
            kinds: valid.kinds,
            keys: SigningKeys::generate(),
            created_at: now,
            updated_at: now,
        })
    }

    /// The subscription with `patch` applied, validated as a whole.
    ///
    /// # Errors
    /// Every invalid field, as [`Subscription::create`].
    pub fn change(
        &self,
        patch: SubscriptionPatch,
        policy: &WebhookPolicy,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationErrors> {
        let fields = SubscriptionFields {
            url: patch.url.unwrap_or_else(|| self.url.clone()),
            event_types: patch
                .event_types
                .unwrap_or_else(|| self.event_types.clone()),
            kinds: patch.kinds.unwrap_or_else(|| {
                self.kinds
                    .as_ref()
                    .map(|ks| ks.iter().map(|k| k.as_str().to_owned()).collect())
            }),
        };
        let valid = fields.validate(policy)?;
        Ok(Self {
            url: valid.url,
            event_types: valid.event_types,
            kinds: valid.kinds,
            updated_at: now,
            ..self.clone()
        })
    }

    /// Whether the subscription receives `event`: its type is subscribed and, for a task's
    /// event under a kind filter, the task's kind is one of the filter's.
    pub fn matches(&self, event: &Notification) -> bool {
        event.tenant == self.tenant
            && self.event_types.contains(&event.detail_type)
            && match (&self.kinds, event.detail["kind"].as_str()) {
                (Some(kinds), Some(kind)) => kinds.iter().any(|k| k.as_str() == kind),
                _ => true,
            }
    }

    /// The `notification` task that delivers `event` here, keyed
    /// `notification:{event id}:{subscription id}` so an event delivered to the worker twice
    /// (or published twice) is sent once; it carries the event's correlation id.
    pub fn delivery(&self, event: &Notification) -> NewTask {
        let delivery = Delivery {
            subscription_id: self.id,
            event_id: event.id.to_string(),
            event: event.webhook_body(),
        };
        let payload = serde_json::to_value(&delivery).expect("a delivery serialises");
        let hash = request_hash(
            TaskKind::Notification,
            &payload,
            DELIVERY_MAX_ATTEMPTS,
            None,
        );
        NewTask {
            id: TaskId::new(),
            tenant: self.tenant.clone(),
            kind: TaskKind::Notification,
            payload,
            max_attempts: DELIVERY_MAX_ATTEMPTS,
            run_after: None,
            idempotency_key: Some(format!("notification:{}:{}", event.id, self.id)),
            request_hash: hash,
            correlation_id: CorrelationId::parse_or_generate(
                event.detail["correlation_id"].as_str(),
            ),
            source: Source::Subscription {
                event_id: event.id.to_string(),
            },
            priority: super::Priority::Normal,
        }
    }

    /// The delivery of a synthetic event of the subscription's first type: `data` holds
    /// `"test": true` and no task or import.
    pub fn test_delivery(&self, now: DateTime<Utc>) -> NewTask {
        let id = Uuid::now_v7();
        let event = Notification {
            id,
            tenant: self.tenant.clone(),
            detail_type: self.event_types[0].clone(),
            detail: json!({"event_id": id, "tenant": self.tenant, "test": true}),
            subject: id,
            created_at: now,
        };
        self.delivery(&event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::notification::{IMPORT_COMPLETED, TASK_DEAD, TASK_SUCCEEDED};

    fn fields() -> SubscriptionFields {
        SubscriptionFields {
            url: "https://hooks.example.com/tms".into(),
            event_types: vec![TASK_SUCCEEDED.into(), IMPORT_COMPLETED.into()],
            kinds: Some(vec!["webhook".into()]),
        }
    }

    fn subscription() -> Subscription {
        Subscription::create(
            Tenant::parse("acme").unwrap(),
            fields(),
            &WebhookPolicy::default(),
            Utc::now(),
        )
        .unwrap()
    }

    fn event(detail_type: &str, kind: Option<&str>) -> Notification {
        let id = Uuid::now_v7();
        let mut detail = json!({"event_id": id, "tenant": "acme", "task_id": Uuid::now_v7(),
                                "correlation_id": "corr-1"});
        if let Some(k) = kind {
            detail["kind"] = json!(k);
        }
        Notification {
            id,
            tenant: Tenant::parse("acme").unwrap(),
            detail_type: detail_type.into(),
            detail,
            subject: id,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn a_new_secret_is_whsec_and_32_random_bytes() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_ne!(a, b);
        let key = STANDARD
            .decode(a.expose().strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(SigningSecret::parse(a.expose()).unwrap(), a);
        assert_eq!(format!("{a:?}"), "SigningSecret(***)");
        for bad in [
            "",
            "whsec_",
            "whsec_!!",
            "sk_MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0",
            "whsec_YWJj",
        ] {
            assert!(SigningSecret::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures_follow_the_standard_webhooks_scheme() {
        // The specification's published example: this secret, id, timestamp and body sign to
        // this signature.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn during_a_rotation_both_secrets_sign_until_the_overlap_ends() {
        let now = Utc::now();
        let keys = SigningKeys::generate();
        let [(_, id), (_, ts), (_, sig)] = keys.headers("evt-1", now, b"{}");
        assert_eq!((id.as_str(), ts), ("evt-1", now.timestamp().to_string()));
        assert_eq!(sig, keys.current.sign("evt-1", now.timestamp(), b"{}"));
        let rotated = keys.rotated(now);
        assert_eq!(rotated.previous.as_ref(), Some(&keys.current));
        let [_, _, (_, both)] = rotated.headers("evt-1", now, b"{}");
        assert_eq!(
            both,
            format!(
                "{} {}",
                rotated.current.sign("evt-1", now.timestamp(), b"{}"),
                keys.current.sign("evt-1", now.timestamp(), b"{}")
            )
        );
        assert_eq!(rotated.overlap_until(now), Some(now + ROTATION_OVERLAP));
        let later = now + ROTATION_OVERLAP;
        let [_, _, (_, one)] = rotated.headers("evt-1", later, b"{}");
        assert_eq!(one, rotated.current.sign("evt-1", later.timestamp(), b"{}"));
        assert_eq!(rotated.overlap_until(later), None);
    }

    #[test]
    fn invalid_fields_are_named() {
        let bad = SubscriptionFields {
            url: "http://hooks.example.com".into(),
            event_types: vec!["Task Started".into(), TASK_DEAD.into(), TASK_DEAD.into()],
            kinds: Some(vec!["notification".into(), "fax".into()]),
        };
        let errors = Subscription::create(
            Tenant::parse("acme").unwrap(),
            bad,
            &WebhookPolicy::default(),
            Utc::now(),
        )
        .unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/url",
                "/event_types/0",
                "/event_types/2",
                "/kinds/0",
                "/kinds/1"
            ]
        );
        let empty = SubscriptionFields {
            event_types: vec![],
            kinds: Some(vec![]),
            ..fields()
        };
        let errors = Subscription::create(
            Tenant::parse("acme").unwrap(),
            empty,
            &WebhookPolicy::default(),
            Utc::now(),
        )
        .unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/event_types", "/kinds"]);
    }

    #[test]
    fn a_subscription_takes_its_types_and_kinds_and_every_import_event() {
        let s = subscription();
        assert!(s.matches(&event(TASK_SUCCEEDED, Some("webhook"))));
        assert!(!s.matches(&event(TASK_SUCCEEDED, Some("noop"))));
        assert!(!s.matches(&event(TASK_DEAD, Some("webhook"))));
        assert!(s.matches(&event(IMPORT_COMPLETED, None)));
        let mut other = event(TASK_SUCCEEDED, Some("webhook"));
        other.tenant = Tenant::parse("globex").unwrap();
        assert!(!s.matches(&other));
        let every_kind = s
            .change(
                SubscriptionPatch {
                    kinds: Some(None),
                    ..SubscriptionPatch::default()
                },
                &WebhookPolicy::default(),
                Utc::now(),
            )
            .unwrap();
        assert!(every_kind.matches(&event(TASK_SUCCEEDED, Some("noop"))));
        assert_eq!(every_kind.keys, s.keys, "a change keeps the secret");
    }

    #[test]
    fn a_delivery_is_keyed_by_event_and_subscription() {
        let s = subscription();
        let e = event(TASK_SUCCEEDED, Some("webhook"));
        let task = s.delivery(&e);
        assert_eq!(task.kind, TaskKind::Notification);
        assert_eq!(
            task.idempotency_key.as_deref(),
            Some(format!("notification:{}:{}", e.id, s.id).as_str())
        );
        assert_eq!(task.correlation_id.as_str(), "corr-1");
        assert_eq!(task.max_attempts, DELIVERY_MAX_ATTEMPTS);
        let delivery: Delivery = serde_json::from_value(task.payload.clone()).unwrap();
        assert_eq!(delivery.subscription_id, s.id);
        assert_eq!(delivery.event, e.webhook_body());
        assert_eq!(s.delivery(&e).request_hash, task.request_hash);
        let test = s.test_delivery(Utc::now());
        assert_eq!(test.payload["event"]["type"], TASK_SUCCEEDED);
        assert_eq!(test.payload["event"]["data"]["test"], true);
    }
}
