//! Who may do what: a caller is a tenant with a role, and sees a scope of tasks.
//!
//! - `viewer`: reads its tenant's tasks and imports;
//! - `member`: also creates, cancels and redrives them (what a token without a role is);
//! - `operator`: reads and acts on every tenant's tasks, bulk actions across tenants included.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::Tenant;

/// A caller's role, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Member,
    Operator,
}

impl Role {
    pub const ALL: [Self; 3] = [Self::Viewer, Self::Member, Self::Operator];

    /// # Errors
    /// The names the value may take.
    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == raw)
            .ok_or_else(|| "the role must be one of: viewer, member, operator".to_owned())
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Member => "member",
            Self::Operator => "operator",
        }
    }

    /// Whether the role may change tasks (create, cancel, redrive).
    pub fn can_act(&self) -> bool {
        *self >= Self::Member
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tasks a read or an action may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One tenant's.
    Tenant(Tenant),
    /// Every tenant's (operators).
    All,
}

impl Scope {
    /// The one tenant of the scope, `None` for every tenant.
    pub fn tenant(&self) -> Option<&Tenant> {
        match self {
            Self::Tenant(t) => Some(t),
            Self::All => None,
        }
    }

    pub fn includes(&self, tenant: &Tenant) -> bool {
        self.tenant().is_none_or(|t| t == tenant)
    }
}

/// An authenticated caller: the tenant it acts as and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: Tenant,
    pub role: Role,
}

/// Why a caller may not see or do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("the {role} role may not {action}")]
    RoleTooWeak { role: Role, action: &'static str },
    #[error("only operators may read or act on other tenants")]
    OtherTenant,
}

impl Caller {
    /// The scope of a read or an action, optionally narrowed to `tenant`: an operator's
    /// is every tenant's unless it names one; anyone else's is its own tenant's.
    ///
    /// # Errors
    /// [`AccessError::OtherTenant`] when a non-operator names another tenant.
    pub fn scope(&self, tenant: Option<&Tenant>) -> Result<Scope, AccessError> {
        match (self.role, tenant) {
            (Role::Operator, None) => Ok(Scope::All),
            (Role::Operator, Some(t)) => Ok(Scope::Tenant(t.clone())),
            (_, Some(t)) if *t != self.tenant => Err(AccessError::OtherTenant),
            _ => Ok(Scope::Tenant(self.tenant.clone())),
        }
    }

    /// # Errors
    /// [`AccessError::RoleTooWeak`] when the role only reads.
    pub fn may_act(&self, action: &'static str) -> Result<(), AccessError> {
        if self.role.can_act() {
            Ok(())
        } else {
            Err(AccessError::RoleTooWeak {
                role: self.role,
                action,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(tenant: &str, role: Role) -> Caller {
        Caller {
            tenant: Tenant::parse(tenant).unwrap(),
            role,
        }
    }

    #[test]
    fn roles_parse_by_name_and_order_by_power() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()).unwrap(), role);
        }
        assert!(Role::parse("admin").is_err());
        assert!(Role::Viewer < Role::Member && Role::Member < Role::Operator);
        assert!(!Role::Viewer.can_act());
        assert!(Role::Member.can_act() && Role::Operator.can_act());
    }

    #[test]
    fn scopes_follow_the_role() {
        let demo = Tenant::parse("demo").unwrap();
        let acme = Tenant::parse("acme").unwrap();
        for role in [Role::Viewer, Role::Member] {
            let c = caller("demo", role);
            assert_eq!(c.scope(None).unwrap(), Scope::Tenant(demo.clone()));
            assert_eq!(c.scope(Some(&demo)).unwrap(), Scope::Tenant(demo.clone()));
            assert_eq!(c.scope(Some(&acme)), Err(AccessError::OtherTenant));
        }
        let op = caller("ops", Role::Operator);
        assert_eq!(op.scope(None).unwrap(), Scope::All);
        assert_eq!(op.scope(Some(&acme)).unwrap(), Scope::Tenant(acme.clone()));
        assert!(Scope::All.includes(&acme));
        assert!(!Scope::Tenant(demo).includes(&acme));
    }

    #[test]
    fn viewers_may_not_act() {
        assert!(matches!(
            caller("demo", Role::Viewer).may_act("cancel tasks"),
            Err(AccessError::RoleTooWeak { .. })
        ));
        assert!(caller("demo", Role::Member).may_act("cancel tasks").is_ok());
    }
}
