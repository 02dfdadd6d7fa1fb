//! Flow control: a task's priority, the limits a tenant sets on its tasks (how many run at once
//! and a token-bucket rate, for all of them or for one kind, and a rate per webhook destination
//! host), and why a task over a limit was deferred rather than run.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::kind::TaskKind;
use super::validation::{pointer_token, FieldError, ValidationErrors};

/// Which work queue a task's messages travel on: `high` tasks have a queue (and consumers) of
/// their own, so a backlog of `normal` ones never delays them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Normal,
    High,
}

impl Priority {
    pub const ALL: [Self; 2] = [Self::Normal, Self::High];

    /// # Errors
    /// A [`FieldError`] at `/priority` naming the priorities there are.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == raw)
            .ok_or_else(|| FieldError::new("/priority", "must be one of: normal, high"))
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::High => "high",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the worker deferred a task instead of running it: the limit it was over. A deferred
/// task keeps its status and attempts; it runs once the limit lets it (its `run_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeferReason {
    /// The tenant's tasks running at once.
    TenantConcurrency,
    /// The tenant's rate.
    TenantRate,
    /// The tasks of the task's kind running at once.
    KindConcurrency,
    /// The rate of the task's kind.
    KindRate,
    /// The rate of calls to the webhook's destination host.
    HostRate,
}

impl DeferReason {
    pub const ALL: [Self; 5] = [
        Self::TenantConcurrency,
        Self::TenantRate,
        Self::KindConcurrency,
        Self::KindRate,
        Self::HostRate,
    ];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::TenantConcurrency => "tenant_concurrency",
            Self::TenantRate => "tenant_rate",
            Self::KindConcurrency => "kind_concurrency",
            Self::KindRate => "kind_rate",
            Self::HostRate => "host_rate",
        }
    }

    /// What a person reads: "over the tenant's limit of tasks running at once".
    pub fn describe(&self) -> &'static str {
        match self {
            Self::TenantConcurrency => "over the tenant's limit of tasks running at once",
            Self::TenantRate => "over the tenant's rate",
            Self::KindConcurrency => "over the limit of tasks of its kind running at once",
            Self::KindRate => "over the rate of its kind",
            Self::HostRate => "over the rate of calls to its webhook's host",
        }
    }
}

impl fmt::Display for DeferReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most tasks a limit lets run at once.
pub const MAX_RUNNING_LIMIT: u32 = 100_000;
/// The highest rate a limit sets, in tasks a second.
pub const RATE_LIMIT: f64 = 100_000.0;
/// The largest burst of a rate.
pub const BURST_LIMIT: u32 = 1_000_000;
/// The most webhook hosts a tenant limits.
pub const HOSTS_LIMIT: usize = 100;
/// A host as [`Limits::hosts`] names it, for the OpenAPI document: a lower-case DNS name, an
/// IPv4 address, or an IPv6 address in brackets.
pub const HOST_PATTERN: &str = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]{2,45}\])$";

/// A token bucket: `per_second` tokens flow in, up to `burst`; each task takes one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    /// The burst a rate has when none is given: a second's worth, at least one task.
    pub fn default_burst(per_second: f64) -> u32 {
        if per_second.is_finite() && per_second > 1.0 {
            per_second.ceil().min(f64::from(BURST_LIMIT)) as u32
        } else {
            1
        }
    }

    fn check(&self, pointer: &str, errors: &mut Vec<FieldError>) {
        if !(self.per_second.is_finite() && self.per_second > 0.0 && self.per_second <= RATE_LIMIT)
        {
            errors.push(FieldError::new(
                format!("{pointer}/per_second"),
                format!("must be more than 0 and at most {RATE_LIMIT}"),
            ));
        }
        if !(1..=BURST_LIMIT).contains(&self.burst) {
            errors.push(FieldError::new(
                format!("{pointer}/burst"),
                format!("must be between 1 and {BURST_LIMIT}"),
            ));
        }
    }
}

/// What limits one set of a tenant's tasks (all of them, or one kind): how many may run at once
/// and at what rate they may start. Either may be absent; both absent is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyLimit {
    pub max_running: Option<u32>,
    pub rate: Option<Rate>,
}

impl KeyLimit {
    pub fn is_empty(&self) -> bool {
        self.max_running.is_none() && self.rate.is_none()
    }

    fn check(&self, pointer: &str, errors: &mut Vec<FieldError>) {
        if let Some(n) = self.max_running {
            if !(1..=MAX_RUNNING_LIMIT).contains(&n) {
                errors.push(FieldError::new(
                    format!("{pointer}/max_running"),
                    format!("must be between 1 and {MAX_RUNNING_LIMIT}"),
                ));
            }
        }
        if let Some(rate) = &self.rate {
            rate.check(&format!("{pointer}/rate"), errors);
        }
    }
}

/// Which tasks a limit applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// Every task of the tenant.
    Tenant,
    Kind(TaskKind),
    /// `webhook` tasks calling this host.
    Host(String),
}

impl LimitKey {
    /// The key as stored: `*`, `kind:<kind>` or `host:<host>`.
    pub fn as_key(&self) -> String {
        match self {
            Self::Tenant => "*".to_owned(),
            Self::Kind(kind) => format!("kind:{}", kind.as_str()),
            Self::Host(host) => format!("host:{host}"),
        }
    }

    pub fn parse_key(raw: &str) -> Option<Self> {
        if raw == "*" {
            return Some(Self::Tenant);
        }
        if let Some(kind) = raw.strip_prefix("kind:") {
            return TaskKind::parse(kind).ok().map(Self::Kind);
        }
        raw.strip_prefix("host:")
            .filter(|h| is_limit_host(h))
            .map(|h| Self::Host(h.to_owned()))
    }
}

/// A tenant's limits: on all its tasks, on each kind, and on each webhook destination host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub tenant: KeyLimit,
    /// By kind, at most one entry a kind (the order of [`TaskKind::ALL`] once stored).
    pub kinds: Vec<(TaskKind, KeyLimit)>,
    /// Calls of `webhook` tasks to a host (as the URL names it, lower-cased), by rate.
    pub hosts: BTreeMap<String, Rate>,
}

impl Limits {
    /// Every limit with its key; kinds and hosts without a limit are left out.
    pub fn keys(&self) -> Vec<(LimitKey, KeyLimit)> {
        let mut keys = Vec::new();
        if !self.tenant.is_empty() {
            keys.push((LimitKey::Tenant, self.tenant));
        }
        for (kind, limit) in &self.kinds {
            if !limit.is_empty() {
                keys.push((LimitKey::Kind(*kind), *limit));
            }
        }
        for (host, rate) in &self.hosts {
            keys.push((
                LimitKey::Host(host.clone()),
                KeyLimit {
                    max_running: None,
                    rate: Some(*rate),
                },
            ));
        }
        keys
    }

    /// The limits the keys hold (the inverse of [`Limits::keys`]; a host key's concurrency is
    /// not a thing and is dropped).
    pub fn from_keys(keys: impl IntoIterator<Item = (LimitKey, KeyLimit)>) -> Self {
        let mut limits = Self::default();
        for (key, limit) in keys {
            match key {
                LimitKey::Tenant => limits.tenant = limit,
                LimitKey::Kind(kind) => {
                    limits.kinds.retain(|(k, _)| *k != kind);
                    limits.kinds.push((kind, limit));
                }
                LimitKey::Host(host) => {
                    if let Some(rate) = limit.rate {
                        limits.hosts.insert(host, rate);
                    }
                }
            }
        }
        limits
    }

    pub fn is_empty(&self) -> bool {
        self.keys().is_empty()
    }

    /// Checks every value, collecting all errors (pointers as in the `PUT /v1/limits` body).
    ///
    /// # Errors
    /// Each invalid field.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        self.tenant.check("", &mut errors);
        for (i, (kind, limit)) in self.kinds.iter().enumerate() {
            let pointer = format!("/kinds/{}", kind.as_str());
            if self.kinds[..i].iter().any(|(k, _)| k == kind) {
                errors.push(FieldError::new(pointer.clone(), "is given twice"));
            }
            limit.check(&pointer, &mut errors);
        }
        if self.hosts.len() > HOSTS_LIMIT {
            errors.push(FieldError::new(
                "/hosts",
                format!("at most {HOSTS_LIMIT} hosts"),
            ));
        }
        for (host, rate) in &self.hosts {
            let pointer = format!("/hosts/{}", pointer_token(host));
            if !is_limit_host(host) {
                errors.push(FieldError::new(
                    pointer.clone(),
                    "must be a host as webhook URLs name it, in lower case: a DNS name \
                     (api.partner.example), an IPv4 address or an IPv6 address in brackets",
                ));
            }
            rate.check(&pointer, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

/// A host a limit names: see [`HOST_PATTERN`].
pub fn is_limit_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return (2..=45).contains(&inner.len())
            && inner.parse::<std::net::Ipv6Addr>().is_ok()
            && inner == inner.to_ascii_lowercase();
    }
    (1..=253).contains(&host.len())
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// The destination host of a webhook URL as flow control keys it: the URL's host as written,
/// lower-cased (an IPv6 literal keeps its brackets). The worker's claim reads it the same way
/// from the stored payload.
pub fn webhook_host(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if authority.starts_with('[') {
        &authority[..=authority.find(']')?]
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(limits: &Limits) -> Vec<String> {
        limits
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.pointer)
            .collect()
    }

    #[test]
    fn priorities_and_reasons_parse_by_name() {
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()).unwrap(), p);
        }
        assert_eq!(Priority::default(), Priority::Normal);
        assert_eq!(Priority::parse("urgent").unwrap_err().pointer, "/priority");
        for r in DeferReason::ALL {
            assert_eq!(DeferReason::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.as_str())
            );
        }
        assert_eq!(DeferReason::parse("fairness"), None);
    }

    #[test]
    fn keys_round_trip_through_their_stored_form() {
        let mut limits = Limits {
            tenant: KeyLimit {
                max_running: Some(10),
                rate: None,
            },
            ..Limits::default()
        };
        limits.kinds.push((
            TaskKind::Webhook,
            KeyLimit {
                max_running: None,
                rate: Some(Rate {
                    per_second: 2.5,
                    burst: 5,
                }),
            },
        ));
        limits.kinds.push((TaskKind::Email, KeyLimit::default()));
        limits.hosts.insert(
            "api.partner.example".into(),
            Rate {
                per_second: 1.0,
                burst: 1,
            },
        );
        let keys = limits.keys();
        let stored: Vec<String> = keys.iter().map(|(k, _)| k.as_key()).collect();
        assert_eq!(stored, ["*", "kind:webhook", "host:api.partner.example"]);
        for (key, _) in &keys {
            assert_eq!(LimitKey::parse_key(&key.as_key()).as_ref(), Some(key));
        }
        let mut without_empty = limits.clone();
        without_empty.kinds.retain(|(k, _)| *k != TaskKind::Email);
        assert_eq!(Limits::from_keys(keys), without_empty);
        assert_eq!(LimitKey::parse_key("kind:fax"), None);
        assert_eq!(LimitKey::parse_key("host:API.example"), None);
    }

    #[test]
    fn every_invalid_value_is_named() {
        let mut limits = Limits {
            tenant: KeyLimit {
                max_running: Some(0),
                rate: Some(Rate {
                    per_second: f64::NAN,
                    burst: 0,
                }),
            },
            ..Limits::default()
        };
        limits.kinds.push((
            TaskKind::Webhook,
            KeyLimit {
                max_running: Some(MAX_RUNNING_LIMIT + 1),
                rate: Some(Rate {
                    per_second: -1.0,
                    burst: 1,
                }),
            },
        ));
        limits.kinds.push((TaskKind::Webhook, KeyLimit::default()));
        limits.hosts.insert(
            "API.Partner.example".into(),
            Rate {
                per_second: RATE_LIMIT * 2.0,
                burst: 1,
            },
        );
        assert_eq!(
            pointers(&limits),
            [
                "/max_running",
                "/rate/per_second",
                "/rate/burst",
                "/kinds/webhook/max_running",
                "/kinds/webhook/rate/per_second",
                "/kinds/webhook",
                "/hosts/API.Partner.example",
                "/hosts/API.Partner.example/per_second",
            ]
        );
        assert!(Limits::default().validate().is_ok());
    }

    #[test]
    fn hosts_are_named_as_webhook_urls_name_them() {
        for ok in [
            "api.partner.example",
            "localhost",
            "127.0.0.1",
            "[::1]",
            "xn--bcher-kva.example",
        ] {
            assert!(is_limit_host(ok), "{ok}");
        }
        for bad in [
            "",
            "API.example",
            "-a.example",
            "a..b",
            "[not-ip]",
            "a/b",
            "[::G]",
        ] {
            assert!(!is_limit_host(bad), "{bad}");
        }
        let pattern = regex::Regex::new(HOST_PATTERN).unwrap();
        for host in ["api.partner.example", "[::1]", "API.example", "a..b", "-a"] {
            assert_eq!(pattern.is_match(host), is_limit_host(host), "{host}");
        }
        for (url, host) in [
            (
                "https://API.Partner.example:8443/x?y",
                Some("api.partner.example"),
            ),
            ("https://api.partner.example", Some("api.partner.example")),
            ("http://[::1]:8080/hook", Some("[::1]")),
            ("http://127.0.0.1/hook", Some("127.0.0.1")),
            ("not a url", None),
        ] {
            assert_eq!(webhook_host(url).as_deref(), host, "{url}");
        }
    }

    #[test]
    fn a_rate_without_a_burst_allows_a_second_of_tasks() {
        assert_eq!(Rate::default_burst(0.5), 1);
        assert_eq!(Rate::default_burst(1.0), 1);
        assert_eq!(Rate::default_burst(2.5), 3);
        assert_eq!(Rate::default_burst(50.0), 50);
    }
}
