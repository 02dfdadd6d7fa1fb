//! Who may submit tasks on the work queue. A submission names its tenant; that name is trusted
//! only for the producers the deployment allows to submit for it. The producer is the message's
//! SQS `SenderId` (the IAM principal that sent it: a user id `AIDA...`, a role session
//! `AROA...:session`, or an account id), and the producer map, an SSM `SecureString` like the
//! API's token map, says which tenants each may submit for:
//!
//! ```json
//! {"AROAEXAMPLEROLEID": ["acme", "globex"], "AIDAEXAMPLEUSERID": "*"}
//! ```
//!
//! A key matches the whole `SenderId` or, for a role, its id before the `:` (any session).

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use tms::Tenant;

/// The tenants one producer may submit for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    Every,
    Tenants(HashSet<Tenant>),
}

/// The parsed producer map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerMap(HashMap<String, Allowed>);

/// Why a submission's producer is not trusted for its tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("the message carries no SenderId, so its producer cannot be authorised")]
    NoSender,
    #[error("producer {sender} may not submit tasks for tenant {tenant}")]
    Tenant { sender: String, tenant: Tenant },
}

/// Parses `{"<sender id>": "*" | "<tenant>" | ["<tenant>" | "*", ...], ...}`.
///
/// # Errors
/// What is wrong with the map.
pub fn parse_producer_map(json: &str) -> Result<ProducerMap, String> {
    let map: serde_json::Map<String, Value> = serde_json::from_str(json)
        .map_err(|_| "the producer map is not a JSON object".to_owned())?;
    let mut out = HashMap::new();
    for (sender, value) in map {
        if sender.is_empty() {
            return Err("a producer id is empty".into());
        }
        let names: Vec<&Value> = match &value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let mut tenants = HashSet::new();
        let mut every = false;
        for name in names {
            match name.as_str() {
                Some("*") => every = true,
                Some(t) => {
                    tenants.insert(Tenant::parse(t).map_err(|_| {
                        format!("producer {sender}: {t:?} is not a valid tenant or \"*\"")
                    })?);
                }
                None => {
                    return Err(format!(
                        "producer {sender}: expected a tenant, \"*\" or a list of them"
                    ))
                }
            }
        }
        out.insert(
            sender,
            if every {
                Allowed::Every
            } else {
                Allowed::Tenants(tenants)
            },
        );
    }
    Ok(ProducerMap(out))
}

impl ProducerMap {
    /// Whether `sender` may submit tasks for `tenant`.
    ///
    /// # Errors
    /// [`Denied`] saying why not.
    pub fn authorise(&self, sender: Option<&str>, tenant: &Tenant) -> Result<(), Denied> {
        let sender = sender.filter(|s| !s.is_empty()).ok_or(Denied::NoSender)?;
        let role = sender.split_once(':').map(|(id, _)| id);
        let allowed = self
            .0
            .get(sender)
            .or_else(|| role.and_then(|id| self.0.get(id)));
        match allowed {
            Some(Allowed::Every) => Ok(()),
            Some(Allowed::Tenants(t)) if t.contains(tenant) => Ok(()),
            _ => Err(Denied::Tenant {
                sender: sender.to_owned(),
                tenant: tenant.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(t: &str) -> Tenant {
        Tenant::parse(t).unwrap()
    }

    #[test]
    fn producers_submit_only_for_their_tenants() {
        let map = parse_producer_map(
            r#"{"AROAROLE": ["acme", "globex"], "AIDAUSER": "*", "123456789012": "demo"}"#,
        )
        .unwrap();
        assert!(map
            .authorise(Some("AROAROLE:lambda-1"), &tenant("acme"))
            .is_ok());
        assert!(map.authorise(Some("AROAROLE"), &tenant("globex")).is_ok());
        assert!(map.authorise(Some("AIDAUSER"), &tenant("anyone")).is_ok());
        assert!(map.authorise(Some("123456789012"), &tenant("demo")).is_ok());
        assert_eq!(
            map.authorise(Some("AROAROLE:s"), &tenant("demo"))
                .unwrap_err()
                .to_string(),
            "producer AROAROLE:s may not submit tasks for tenant demo"
        );
        assert!(map.authorise(Some("AIDAOTHER"), &tenant("acme")).is_err());
        assert!(map.authorise(Some("AIDAUSER:x"), &tenant("acme")).is_ok());
        assert_eq!(map.authorise(None, &tenant("acme")), Err(Denied::NoSender));
        assert!(ProducerMap::default()
            .authorise(Some("AIDAUSER"), &tenant("acme"))
            .is_err());
    }

    #[test]
    fn malformed_maps_say_what_is_wrong() {
        for bad in [
            "[]",
            r#"{"a": 1}"#,
            r#"{"a": ["x/y"]}"#,
            r#"{"": "*"}"#,
            "nope",
        ] {
            assert!(parse_producer_map(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_producer_map("{}").unwrap(), ProducerMap::default());
    }
}
