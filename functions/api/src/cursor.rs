//! Keyset pagination cursors: opaque to clients and tamper-evident. A cursor holds the last id
//! of a page and an HMAC over that id, the scope (a tenant, or every tenant) and the filters, so
//! a cursor cannot be forged, edited, or replayed for another tenant or another filter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tms::ports::TaskFilter;
use tms::{Scope, TaskId};
use uuid::Uuid;

const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
/// Encoded length: version + id + truncated MAC, base64url without padding.
pub const CURSOR_LEN: usize = 44;
pub const CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]{44}$";

#[derive(Clone)]
pub struct CursorKey(Vec<u8>);

impl CursorKey {
    pub fn new(secret: &str) -> Self {
        Self(secret.as_bytes().to_vec())
    }

    fn mac(&self, list: &str, id: &[u8; 16], scope: &Scope, filters: &[&str]) -> [u8; MAC_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(&[VERSION]);
        mac.update(id);
        // A tenant name never holds `*`: the scope of every tenant cannot pass for one.
        let scope = scope.tenant().map_or("*", |t| t.as_str());
        for part in [list, scope].iter().chain(filters) {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part.as_bytes());
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The cursor that continues a task list after `last` for this scope and filter.
    pub fn encode(&self, last: TaskId, scope: &Scope, filter: &TaskFilter) -> String {
        let filters = task_filters(filter);
        self.encode_scoped("tasks", last.as_uuid(), scope, &as_strs(&filters))
    }

    /// The task id a cursor continues after, if it is genuine and was issued for a task list of
    /// this scope with this filter.
    pub fn decode(&self, cursor: &str, scope: &Scope, filter: &TaskFilter) -> Option<TaskId> {
        let filters = task_filters(filter);
        self.decode_scoped("tasks", cursor, scope, &as_strs(&filters))
            .map(TaskId::from_uuid)
    }

    /// A cursor for a list (`list`) of ids.
    pub fn encode_scoped(
        &self,
        list: &str,
        last: &Uuid,
        scope: &Scope,
        filters: &[&str],
    ) -> String {
        let id = *last.as_bytes();
        let mut raw = Vec::with_capacity(1 + 16 + MAC_LEN);
        raw.push(VERSION);
        raw.extend_from_slice(&id);
        raw.extend_from_slice(&self.mac(list, &id, scope, filters));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The id a cursor of `list` continues after, if it is genuine and was issued for this
    /// scope and these filters.
    pub fn decode_scoped(
        &self,
        list: &str,
        cursor: &str,
        scope: &Scope,
        filters: &[&str],
    ) -> Option<Uuid> {
        if cursor.len() != CURSOR_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let (version, rest) = raw.split_first()?;
        if *version != VERSION || rest.len() != 16 + MAC_LEN {
            return None;
        }
        let (id, mac) = rest.split_at(16);
        let id: [u8; 16] = id.try_into().ok()?;
        let expected = self.mac(list, &id, scope, filters);
        let genuine: bool = subtle::ConstantTimeEq::ct_eq(&expected[..], mac).into();
        genuine.then(|| Uuid::from_bytes(id))
    }
}

/// Every field of the filter as text (empty when not given), in a fixed order.
fn task_filters(filter: &TaskFilter) -> [String; 6] {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or(String::new(), |t| t.timestamp_micros().to_string())
    };
    [
        filter.status.map_or("", |s| s.as_str()).to_owned(),
        filter.kind.map_or("", |k| k.as_str()).to_owned(),
        filter.source.map_or("", |s| s.as_str()).to_owned(),
        time(filter.created_after),
        time(filter.created_before),
        filter.text.clone().unwrap_or_default(),
    ]
}

fn as_strs(filters: &[String]) -> Vec<&str> {
    filters.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tms::{Status, TaskKind, Tenant};

    fn tenant(t: &str) -> Scope {
        Scope::Tenant(Tenant::parse(t).unwrap())
    }

    fn dead() -> TaskFilter {
        TaskFilter {
            status: Some(Status::Dead),
            ..TaskFilter::default()
        }
    }

    #[test]
    fn round_trips_for_the_same_scope_and_filters() {
        let key = CursorKey::new("k");
        let id = TaskId::new();
        let c = key.encode(id, &tenant("demo"), &dead());
        assert_eq!(c.len(), CURSOR_LEN);
        assert!(regex::Regex::new(CURSOR_PATTERN).unwrap().is_match(&c));
        assert_eq!(key.decode(&c, &tenant("demo"), &dead()), Some(id));
        let all = key.encode(id, &Scope::All, &dead());
        assert_eq!(key.decode(&all, &Scope::All, &dead()), Some(id));
    }

    #[test]
    fn refuses_edited_foreign_or_misapplied_cursors() {
        let key = CursorKey::new("k");
        let none = TaskFilter::default();
        let c = key.encode(TaskId::new(), &tenant("demo"), &none);
        assert_eq!(
            key.decode(&c, &tenant("acme"), &none),
            None,
            "another tenant"
        );
        assert_eq!(key.decode(&c, &Scope::All, &none), None, "every tenant");
        let pending = TaskFilter {
            status: Some(Status::Pending),
            ..TaskFilter::default()
        };
        assert_eq!(
            key.decode(&c, &tenant("demo"), &pending),
            None,
            "another filter"
        );
        let email = TaskFilter {
            kind: Some(TaskKind::Email),
            ..TaskFilter::default()
        };
        assert_eq!(
            key.decode(&c, &tenant("demo"), &email),
            None,
            "another filter"
        );
        let text = TaskFilter {
            text: Some("order".into()),
            ..TaskFilter::default()
        };
        assert_eq!(
            key.decode(&c, &tenant("demo"), &text),
            None,
            "another filter"
        );
        assert_eq!(
            CursorKey::new("other").decode(&c, &tenant("demo"), &none),
            None,
            "another key"
        );
        let mut edited = c.clone().into_bytes();
        edited[5] = if edited[5] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            key.decode(
                std::str::from_utf8(&edited).unwrap(),
                &tenant("demo"),
                &none
            ),
            None
        );
        for junk in [
            "",
            "abc",
            &"A".repeat(44),
            &format!("{c}="),
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert_eq!(key.decode(junk, &tenant("demo"), &none), None, "{junk}");
        }
    }
}
