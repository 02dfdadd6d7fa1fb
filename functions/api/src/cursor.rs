//! Keyset pagination cursors: opaque to clients and tamper-evident. A cursor holds the last id
//! of a page and an HMAC over that id, the tenant and the filters, so a cursor cannot be
//! forged, edited, or replayed for another tenant or another filter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tms::{Status, TaskId, TaskKind, Tenant};
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

    fn mac(&self, scope: &str, id: &[u8; 16], tenant: &Tenant, filters: &[&str]) -> [u8; MAC_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(&[VERSION]);
        mac.update(id);
        for part in [scope, tenant.as_str()].iter().chain(filters) {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part.as_bytes());
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The cursor that continues a task list after `last` for this tenant and these filters.
    pub fn encode(
        &self,
        last: TaskId,
        tenant: &Tenant,
        status: Option<Status>,
        kind: Option<TaskKind>,
    ) -> String {
        self.encode_scoped("tasks", last.as_uuid(), tenant, &task_filters(status, kind))
    }

    /// The task id a cursor continues after, if it is genuine and was issued for a task list of
    /// this tenant with these filters.
    pub fn decode(
        &self,
        cursor: &str,
        tenant: &Tenant,
        status: Option<Status>,
        kind: Option<TaskKind>,
    ) -> Option<TaskId> {
        self.decode_scoped("tasks", cursor, tenant, &task_filters(status, kind))
            .map(TaskId::from_uuid)
    }

    /// A cursor for a list (`scope`) of ids.
    pub fn encode_scoped(
        &self,
        scope: &str,
        last: &Uuid,
        tenant: &Tenant,
        filters: &[&str],
    ) -> String {
        let id = *last.as_bytes();
        let mut raw = Vec::with_capacity(1 + 16 + MAC_LEN);
        raw.push(VERSION);
        raw.extend_from_slice(&id);
        raw.extend_from_slice(&self.mac(scope, &id, tenant, filters));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The id a cursor of `scope` continues after, if it is genuine and was issued for this
    /// tenant and these filters.
    pub fn decode_scoped(
        &self,
        scope: &str,
        cursor: &str,
        tenant: &Tenant,
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
        let expected = self.mac(scope, &id, tenant, filters);
        let genuine: bool = subtle::ConstantTimeEq::ct_eq(&expected[..], mac).into();
        genuine.then(|| Uuid::from_bytes(id))
    }
}

fn task_filters(status: Option<Status>, kind: Option<TaskKind>) -> [&'static str; 2] {
    [
        status.map_or("", |s| s.as_str()),
        kind.map_or("", |k| k.as_str()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(t: &str) -> Tenant {
        Tenant::parse(t).unwrap()
    }

    #[test]
    fn round_trips_for_the_same_tenant_and_filters() {
        let key = CursorKey::new("k");
        let id = TaskId::new();
        let c = key.encode(id, &tenant("demo"), Some(Status::Dead), None);
        assert_eq!(c.len(), CURSOR_LEN);
        assert!(regex::Regex::new(CURSOR_PATTERN).unwrap().is_match(&c));
        assert_eq!(
            key.decode(&c, &tenant("demo"), Some(Status::Dead), None),
            Some(id)
        );
    }

    #[test]
    fn refuses_edited_foreign_or_misapplied_cursors() {
        let key = CursorKey::new("k");
        let c = key.encode(TaskId::new(), &tenant("demo"), None, None);
        assert_eq!(
            key.decode(&c, &tenant("acme"), None, None),
            None,
            "another tenant"
        );
        assert_eq!(
            key.decode(&c, &tenant("demo"), Some(Status::Pending), None),
            None,
            "another filter"
        );
        assert_eq!(
            key.decode(&c, &tenant("demo"), None, Some(TaskKind::Email)),
            None,
            "another filter"
        );
        assert_eq!(
            CursorKey::new("other").decode(&c, &tenant("demo"), None, None),
            None,
            "another key"
        );
        let mut edited = c.clone().into_bytes();
        edited[5] = if edited[5] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            key.decode(
                std::str::from_utf8(&edited).unwrap(),
                &tenant("demo"),
                None,
                None
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
            assert_eq!(
                key.decode(junk, &tenant("demo"), None, None),
                None,
                "{junk}"
            );
        }
    }
}
