//! Flow control: a tenant's limits (tasks running at once and a token-bucket rate, for all its
//! tasks and per kind; a rate per webhook destination host), read and replaced as one document,
//! with what each limited key uses now. The worker's claim honours them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tms::ports::StoredLimits;
use tms::{
    Caller, FieldError, KeyLimit, LimitKey, Limits, Rate, Scope, TaskKind, Tenant,
    ValidationErrors, BURST_LIMIT, HOSTS_LIMIT, HOST_PATTERN, MAX_RUNNING_LIMIT, RATE_LIMIT,
};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::tenant_param;
use crate::extract::JsonBody;
use crate::model::{integer, present};
use crate::problem::Problem;
use crate::AppState;

/// A token bucket as a request gives it; `burst` defaults to a second's worth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateBody {
    pub per_second: f64,
    #[serde(default, deserialize_with = "integer")]
    pub burst: Option<u32>,
}

impl From<RateBody> for Rate {
    fn from(r: RateBody) -> Self {
        Self {
            per_second: r.per_second,
            burst: r.burst.unwrap_or_else(|| Rate::default_burst(r.per_second)),
        }
    }
}

/// The limit of all the tenant's tasks, or of one kind, as a request gives it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimitBody {
    #[serde(default, deserialize_with = "integer")]
    pub max_running: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub rate: Option<RateBody>,
}

impl From<KeyLimitBody> for KeyLimit {
    fn from(l: KeyLimitBody) -> Self {
        Self {
            max_running: l.max_running,
            rate: l.rate.map(Into::into),
        }
    }
}

/// `PUT /v1/limits`: the tenant's whole limits document; its schema is [`schemas`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsBody {
    #[serde(default, deserialize_with = "integer")]
    pub max_running: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub rate: Option<RateBody>,
    #[serde(default)]
    pub kinds: BTreeMap<String, KeyLimitBody>,
    #[serde(default)]
    pub hosts: BTreeMap<String, RateBody>,
}

/// JSON Pointer escaping of one reference token (RFC 6901).
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl LimitsBody {
    /// The limits the body sets, every invalid field named.
    ///
    /// # Errors
    /// Each invalid field: an unknown kind, and whatever [`Limits::validate`] refuses.
    pub fn into_limits(self) -> Result<Limits, ValidationErrors> {
        let mut errors = Vec::new();
        let mut limits = Limits {
            tenant: KeyLimitBody {
                max_running: self.max_running,
                rate: self.rate,
            }
            .into(),
            ..Limits::default()
        };
        for (name, limit) in self.kinds {
            match TaskKind::parse(&name) {
                Ok(kind) => limits.kinds.push((kind, limit.into())),
                Err(_) => errors.push(FieldError::new(
                    format!("/kinds/{}", token(&name)),
                    format!("is not a kind; the kinds are: {}", kind_names().join(", ")),
                )),
            }
        }
        limits.hosts = self
            .hosts
            .into_iter()
            .map(|(host, rate)| (host, rate.into()))
            .collect();
        if let Err(invalid) = limits.validate() {
            errors.extend(invalid.0);
        }
        if errors.is_empty() {
            Ok(limits)
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

fn kind_names() -> Vec<&'static str> {
    TaskKind::ALL.iter().map(TaskKind::as_str).collect()
}

/// A token bucket: `per_second` tokens flow in, up to `burst`; each task started takes one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateView {
    pub per_second: f64,
    pub burst: u32,
}

impl From<Rate> for RateView {
    fn from(r: Rate) -> Self {
        Self {
            per_second: r.per_second,
            burst: r.burst,
        }
    }
}

/// One set of the tenant's tasks' limit; an absent field is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KeyLimitView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateView>,
}

impl From<KeyLimit> for KeyLimitView {
    fn from(l: KeyLimit) -> Self {
        Self {
            max_running: l.max_running,
            rate: l.rate.map(Into::into),
        }
    }
}

/// The limits as a document: the shape `PUT /v1/limits` takes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitsView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateView>,
    pub kinds: BTreeMap<&'static str, KeyLimitView>,
    pub hosts: BTreeMap<String, RateView>,
}

impl From<&Limits> for LimitsView {
    fn from(l: &Limits) -> Self {
        Self {
            max_running: l.tenant.max_running,
            rate: l.tenant.rate.map(Into::into),
            kinds: l
                .kinds
                .iter()
                .filter(|(_, limit)| !limit.is_empty())
                .map(|(kind, limit)| (kind.as_str(), (*limit).into()))
                .collect(),
            hosts: l
                .hosts
                .iter()
                .map(|(host, rate)| (host.clone(), (*rate).into()))
                .collect(),
        }
    }
}

/// What one limited key uses now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UsageView {
    /// Its tasks running now (with a `max_running` limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<u32>,
    /// The tokens in its bucket now (with a rate); below zero while deferred tasks have booked
    /// the coming ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<f64>,
}

/// What each limited key uses now, keyed as the limits are.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsagesView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<UsageView>,
    pub kinds: BTreeMap<&'static str, UsageView>,
    pub hosts: BTreeMap<String, UsageView>,
}

/// A tenant's limits with their usage: the answer of `GET` and `PUT /v1/limits`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantLimitsView {
    pub tenant: String,
    pub limits: LimitsView,
    pub usage: UsagesView,
    /// The last change; null when the tenant never set limits.
    pub updated_at: Option<DateTime<Utc>>,
}

impl TenantLimitsView {
    pub fn of(tenant: &Tenant, stored: &StoredLimits) -> Self {
        let mut usage = UsagesView::default();
        for (key, used) in &stored.usage {
            let view = UsageView {
                running: used.running,
                tokens: used.tokens,
            };
            match key {
                LimitKey::Tenant => usage.tenant = Some(view),
                LimitKey::Kind(kind) => {
                    usage.kinds.insert(kind.as_str(), view);
                }
                LimitKey::Host(host) => {
                    usage.hosts.insert(host.clone(), view);
                }
            }
        }
        Self {
            tenant: tenant.to_string(),
            limits: (&stored.limits).into(),
            usage,
            updated_at: stored.updated_at,
        }
    }
}

/// Whose limits a request is about.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct LimitsParams {
    /// Operators: this tenant's (their own without it). Others: their own only.
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    tenant: Option<String>,
}

/// The tenant of the request: `?tenant=` (operators, or a caller naming its own), else the
/// caller's.
fn tenant_of(caller: &Caller, query: Option<String>) -> Result<Tenant, Problem> {
    let mut named = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name == "tenant" {
            named = Some(tenant_param(&value)?);
        }
    }
    Ok(match caller.scope(named.as_ref())? {
        Scope::Tenant(t) => t,
        Scope::All => caller.tenant.clone(),
    })
}

/// The deployment's limit store (503 where flow control is not available).
pub(crate) fn store(state: &AppState) -> Result<&dyn tms::ports::LimitStore, Problem> {
    state
        .limits
        .as_deref()
        .ok_or_else(|| Problem::unavailable("flow-control limits are not available here"))
}

/// The tenant's limits and what each limited key uses now (an empty document: no limits).
#[utoipa::path(
    get, path = "/v1/limits", tag = "limits",
    params(LimitsParams),
    responses((status = 200, description = "The tenant's limits and their usage.", body = TenantLimitsView))
)]
pub async fn get_limits(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&caller, query)?;
    let stored = store(&state)?.limits(&tenant).await?;
    Ok(Json(TenantLimitsView::of(&tenant, &stored)).into_response())
}

/// Replaces the tenant's limits with the document: a limit left out is no limit from now. A
/// rate kept keeps its tokens (up to its new burst); a new one starts full.
#[utoipa::path(
    put, path = "/v1/limits", tag = "limits",
    params(LimitsParams),
    request_body(content = LimitsBody, content_type = "application/json"),
    responses((status = 200, description = "The limits as stored, and their usage.", body = TenantLimitsView))
)]
pub async fn put_limits(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody<LimitsBody>,
) -> Result<Response, Problem> {
    caller.may_act("set flow-control limits")?;
    let tenant = tenant_of(&caller, query)?;
    let limits = body
        .into_limits()
        .map_err(|e| Problem::validation(&e, ""))?;
    let stored = store(&state)?.set_limits(&tenant, &limits).await?;
    tracing::info!(%tenant, limits = limits.keys().len(), "flow-control limits set");
    Ok(Json(TenantLimitsView::of(&tenant, &stored)).into_response())
}

/// utoipa's schema model has no `propertyNames` or `exclusiveMinimum` as numbers, so these
/// bodies are registered with a placeholder and their JSON Schema set by [`schemas`].
fn placeholder() -> RefOr<Schema> {
    utoipa::openapi::ObjectBuilder::new().into()
}

impl PartialSchema for LimitsBody {
    fn schema() -> RefOr<Schema> {
        placeholder()
    }
}

impl ToSchema for LimitsBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Limits")
    }
}

impl PartialSchema for TenantLimitsView {
    fn schema() -> RefOr<Schema> {
        placeholder()
    }
}

impl ToSchema for TenantLimitsView {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TenantLimits")
    }
}

/// The schemas of the limits routes, by component name: what the validation accepts (beyond
/// it: an IPv6 host in brackets must be an address), and what the answers hold.
pub fn schemas() -> Vec<(&'static str, Value)> {
    let rate = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["per_second"],
        "description": "A token bucket: per_second tokens flow in, up to burst; each task started takes one.",
        "properties": {
            "per_second": {"type": "number", "exclusiveMinimum": 0, "maximum": RATE_LIMIT,
                "description": "Tasks a second, on average."},
            "burst": {"type": "integer", "minimum": 1, "maximum": BURST_LIMIT,
                "description": "Tasks that may start at once after a quiet spell; default: a second's worth (per_second rounded up), at least 1."}
        }
    });
    let max_running = json!({"type": "integer", "minimum": 1, "maximum": MAX_RUNNING_LIMIT,
        "description": "Tasks running at once at most."});
    let key_limit = json!({
        "type": "object",
        "additionalProperties": false,
        "description": "What limits a set of tasks; a field left out is no limit.",
        "properties": {
            "max_running": max_running,
            "rate": {"$ref": "#/components/schemas/Rate"}
        }
    });
    let kinds = kind_names();
    let host_names =
        json!({"type": "string", "pattern": HOST_PATTERN, "minLength": 1, "maxLength": 253});
    let usage = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "running": {"type": "integer", "minimum": 0,
                "description": "Its tasks running now (with max_running)."},
            "tokens": {"type": "number",
                "description": "Tokens in its bucket now (with a rate); below zero while deferred tasks have booked the coming ones."}
        }
    });
    vec![
        ("Rate", rate),
        ("KeyLimit", key_limit),
        (
            "Limits",
            json!({
                "type": "object",
                "additionalProperties": false,
                "description": "A tenant's flow-control limits. A task over one is deferred (not failed, no attempt charged) until the limit lets it run.",
                "properties": {
                    "max_running": max_running,
                    "rate": {"$ref": "#/components/schemas/Rate"},
                    "kinds": {
                        "type": "object",
                        "description": "Limits of the tenant's tasks of one kind, by kind.",
                        "propertyNames": {"enum": kinds},
                        "additionalProperties": {"$ref": "#/components/schemas/KeyLimit"}
                    },
                    "hosts": {
                        "type": "object",
                        "maxProperties": HOSTS_LIMIT,
                        "description": "The rate of the tenant's webhook calls to a destination host, by host as the URLs name it, in lower case (api.partner.example, 203.0.113.7, [2001:db8::1]).",
                        "propertyNames": host_names,
                        "additionalProperties": {"$ref": "#/components/schemas/Rate"}
                    }
                }
            }),
        ),
        ("LimitUsage", usage),
        (
            "TenantLimits",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["tenant", "limits", "usage", "updated_at"],
                "properties": {
                    "tenant": {"type": "string"},
                    "limits": {"$ref": "#/components/schemas/Limits"},
                    "usage": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["kinds", "hosts"],
                        "description": "What each limited key uses now, keyed as the limits are.",
                        "properties": {
                            "tenant": {"$ref": "#/components/schemas/LimitUsage"},
                            "kinds": {
                                "type": "object",
                                "propertyNames": {"enum": kinds},
                                "additionalProperties": {"$ref": "#/components/schemas/LimitUsage"}
                            },
                            "hosts": {
                                "type": "object",
                                "additionalProperties": {"$ref": "#/components/schemas/LimitUsage"}
                            }
                        }
                    },
                    "updated_at": {"type": ["string", "null"], "format": "date-time",
                        "description": "The last change; null when the tenant never set limits."}
                }
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::parse_json;

    fn pointers(body: Value) -> Vec<String> {
        match parse_json::<LimitsBody>(body.to_string().as_bytes()) {
            Ok(body) => body
                .into_limits()
                .unwrap_err()
                .0
                .into_iter()
                .map(|e| e.pointer)
                .collect(),
            Err(problem) => problem.errors.into_iter().map(|e| e.pointer).collect(),
        }
    }

    #[test]
    fn a_document_reads_into_the_limits_it_sets() {
        let body: LimitsBody = parse_json(
            json!({
                "max_running": 10,
                "rate": {"per_second": 2.5},
                "kinds": {"webhook": {"rate": {"per_second": 1, "burst": 4}}, "email": {}},
                "hosts": {"api.partner.example": {"per_second": 0.5}}
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let limits = body.into_limits().unwrap();
        assert_eq!(limits.tenant.max_running, Some(10));
        assert_eq!(
            limits.tenant.rate,
            Some(Rate {
                per_second: 2.5,
                burst: 3
            })
        );
        let view = serde_json::to_value(LimitsView::from(&limits)).unwrap();
        assert_eq!(
            view,
            json!({
                "max_running": 10,
                "rate": {"per_second": 2.5, "burst": 3},
                "kinds": {"webhook": {"rate": {"per_second": 1.0, "burst": 4}}},
                "hosts": {"api.partner.example": {"per_second": 0.5, "burst": 1}}
            })
        );
        assert_eq!(
            serde_json::to_value(LimitsView::from(&Limits::default())).unwrap(),
            json!({"kinds": {}, "hosts": {}})
        );
    }

    #[test]
    fn every_invalid_field_is_named() {
        let cases = [
            (json!({"rate": {"per_second": 0}}), vec!["/rate/per_second"]),
            (
                json!({"rate": {"per_second": 1, "burst": 0}}),
                vec!["/rate/burst"],
            ),
            (json!({"max_running": 0}), vec!["/max_running"]),
            (
                json!({"kinds": {"fax": {"max_running": 1}}}),
                vec!["/kinds/fax"],
            ),
            (
                json!({"kinds": {"a/b": {}, "noop": {"max_running": 0}}}),
                vec!["/kinds/a~1b", "/kinds/noop/max_running"],
            ),
            (
                json!({"hosts": {"h.example": {"per_second": 1, "max_running": 2}}}),
                vec!["/hosts/h.example/max_running"],
            ),
            (
                json!({"hosts": {"API.example": {"per_second": 1}}}),
                vec!["/hosts/API.example"],
            ),
            (json!({"priority": "high"}), vec!["/priority"]),
            (
                json!({"rate": {"per_second": 1, "burst": 1.5}}),
                vec!["/rate/burst"],
            ),
            (json!({"rate": null}), vec!["/rate"]),
        ];
        for (body, expected) in cases {
            assert_eq!(pointers(body.clone()), expected, "{body}");
        }
    }
}
