//! Delivering an `email` task's message: the identity a deployment sends from and the addresses
//! each message goes out with.

use std::fmt;
use std::str::FromStr;

use super::validation::{is_valid_domain, EmailAddress};

/// The verified identity a deployment sends email from (`TMS_EMAIL_IDENTITY`): one email address,
/// or a domain, any address of which may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailIdentity {
    Address(EmailAddress),
    /// Lower-cased.
    Domain(String),
}

impl FromStr for EmailIdentity {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw.contains('@') {
            EmailAddress::parse(raw)
                .map(Self::Address)
                .map_err(|why| format!("the email address {why}"))
        } else if is_valid_domain(raw) {
            Ok(Self::Domain(raw.to_ascii_lowercase()))
        } else {
            Err("must be an email address (name@example.com) or a domain (example.com)".into())
        }
    }
}

impl EmailIdentity {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Address(address) => address.as_str(),
            Self::Domain(domain) => domain,
        }
    }

    /// The addresses a message from `sender` goes out with. An address identity sends every
    /// message itself, with replies going to the sender; a domain identity sends as the sender,
    /// who must then be an address at that domain.
    ///
    /// # Errors
    /// [`SenderRefused`] when the sender is not at the domain identity.
    pub fn envelope(&self, sender: &str) -> Result<Envelope, SenderRefused> {
        match self {
            Self::Address(address) => Ok(Envelope {
                from: address.as_str().to_owned(),
                reply_to: (!sender.eq_ignore_ascii_case(address.as_str()))
                    .then(|| sender.to_owned()),
            }),
            Self::Domain(domain) => {
                let at_domain = sender
                    .rsplit_once('@')
                    .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain));
                if at_domain {
                    Ok(Envelope {
                        from: sender.to_owned(),
                        reply_to: None,
                    })
                } else {
                    Err(SenderRefused {
                        sender: sender.to_owned(),
                        domain: domain.clone(),
                    })
                }
            }
        }
    }
}

impl fmt::Display for EmailIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a message is from, and where replies go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub reply_to: Option<String>,
}

/// A sender the deployment's domain identity cannot send as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the sender {sender} is not an address at {domain}, the domain this deployment sends email from")]
pub struct SenderRefused {
    pub sender: String,
    pub domain: String,
}

/// A plain-text message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    pub envelope: Envelope,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(raw: &str) -> EmailIdentity {
        raw.parse().unwrap()
    }

    #[test]
    fn an_identity_is_an_address_or_a_domain() {
        assert!(matches!(
            identity("tms@example.com"),
            EmailIdentity::Address(_)
        ));
        assert_eq!(
            identity("Mail.Example.COM"),
            EmailIdentity::Domain("mail.example.com".into())
        );
        for bad in [
            "",
            "example",
            "@example.com",
            "tms@",
            "exa mple.com",
            "-x.com",
        ] {
            assert!(bad.parse::<EmailIdentity>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_address_identity_sends_every_message_with_replies_to_the_sender() {
        let tms = identity("tms@example.com");
        assert_eq!(
            tms.envelope("alice@other.org").unwrap(),
            Envelope {
                from: "tms@example.com".into(),
                reply_to: Some("alice@other.org".into())
            }
        );
        assert_eq!(
            tms.envelope("TMS@example.com").unwrap(),
            Envelope {
                from: "tms@example.com".into(),
                reply_to: None
            },
            "no reply-to when the sender is the identity"
        );
    }

    #[test]
    fn a_domain_identity_sends_as_senders_at_the_domain_only() {
        let domain = identity("example.com");
        assert_eq!(
            domain.envelope("Alice@EXAMPLE.com").unwrap(),
            Envelope {
                from: "Alice@EXAMPLE.com".into(),
                reply_to: None
            }
        );
        for other in [
            "bob@other.org",
            "bob@mail.example.com",
            "bob@example.com.evil.org",
        ] {
            let refused = domain.envelope(other).unwrap_err();
            assert_eq!(refused.sender, other);
            assert!(refused.to_string().contains("example.com"), "{refused}");
        }
    }
}
