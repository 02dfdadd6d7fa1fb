//! Webhook target rules: which URLs may be called, and the classification of addresses that
//! guards against server-side request forgery (SSRF). The executor applies the same rules to
//! every address a host name resolves to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde_json::Value;
use url::{Host, Url};

/// What kind of network an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    Public,
    /// RFC 1918, unique-local IPv6 (fc00::/7), carrier-grade NAT (100.64.0.0/10).
    Private,
    /// 127.0.0.0/8, ::1, and `localhost` names.
    Loopback,
    /// 169.254.0.0/16 and fe80::/10.
    LinkLocal,
    /// Cloud instance metadata endpoints (169.254.169.254, fd00:ec2::254, ...).
    Metadata,
    /// Unspecified, broadcast, multicast, documentation and other special-purpose ranges.
    Reserved,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Loopback => "loopback",
            Self::LinkLocal => "link-local",
            Self::Metadata => "metadata",
            Self::Reserved => "reserved",
        })
    }
}

const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure
    Ipv4Addr::new(169, 254, 170, 2),   // ECS task metadata
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
];
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
const METADATA_NAMES: [&str; 3] = ["metadata.google.internal", "metadata", "instance-data"];

pub fn classify_ip(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, ..] = ip.octets();
    if METADATA_V4.contains(&ip) {
        AddressClass::Metadata
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        AddressClass::Private
    } else if a == 0
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a >= 240
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let first = ip.segments()[0];
    if ip == METADATA_V6 {
        AddressClass::Metadata
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if first & 0xfe00 == 0xfc00 {
        AddressClass::Private
    } else if ip.is_unspecified()
        || ip.is_multicast()
        || first == 0x2001 && ip.segments()[1] == 0xdb8
        || first == 0x0064 && ip.segments()[1] == 0xff9b // NAT64 can reach private v4
        || first == 0x2002 // 6to4 embeds any v4 address
        || first == 0
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// Classifies a URL host without resolving it: literal addresses and well-known names.
/// `None` means a name whose addresses must be resolved and classified one by one.
pub fn classify_host(host: &Host<&str>) -> Option<AddressClass> {
    match host {
        Host::Ipv4(v4) => Some(classify_v4(*v4)),
        Host::Ipv6(v6) => Some(classify_v6(*v6)),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                Some(AddressClass::Loopback)
            } else if METADATA_NAMES.contains(&name.as_str()) {
                Some(AddressClass::Metadata)
            } else {
                None
            }
        }
    }
}

/// Which otherwise-refused targets a deployment allows. Everything is refused by default;
/// `make dev` allows `http` and `loopback` so a local receiver can be called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    pub allow_http: bool,
    pub allow_loopback: bool,
    pub allow_private: bool,
    pub allow_link_local: bool,
}

impl WebhookPolicy {
    /// NOTE: metadata endpoints and reserved ranges are refused whatever the configuration:
    /// no legitimate webhook lives there.
    pub fn permits(&self, class: AddressClass) -> bool {
        match class {
            AddressClass::Public => true,
            AddressClass::Private => self.allow_private,
            AddressClass::Loopback => self.allow_loopback,
            AddressClass::LinkLocal => self.allow_link_local,
            AddressClass::Metadata | AddressClass::Reserved => false,
        }
    }
}

/// Parses `TMS_WEBHOOK_ALLOW`: a comma-separated list of `http`, `loopback`, `private`,
/// `link-local` (empty: allow none).
impl FromStr for WebhookPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut policy = Self::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "http" => policy.allow_http = true,
                "loopback" => policy.allow_loopback = true,
                "private" => policy.allow_private = true,
                "link-local" => policy.allow_link_local = true,
                other => {
                    return Err(format!(
                        "unknown entry {other:?}; expected http, loopback, private or link-local"
                    ))
                }
            }
        }
        Ok(policy)
    }
}

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must be an absolute URL")]
    Malformed,
    #[error("must use https")]
    Scheme,
    #[error("must have a host")]
    NoHost,
    #[error("must not contain credentials")]
    Credentials,
    #[error("must be at most 2048 characters")]
    TooLong,
    #[error("targets a {0} address, which this deployment refuses")]
    Refused(AddressClass),
}

pub const URL_MAX_LEN: usize = 2048;

/// Checks a webhook URL against the policy, classifying literal addresses and well-known names.
///
/// # Errors
/// [`UrlError`] saying what is wrong.
pub fn validate_url(raw: &str, policy: &WebhookPolicy) -> Result<Url, UrlError> {
    if raw.len() > URL_MAX_LEN {
        return Err(UrlError::TooLong);
    }
    let url = Url::parse(raw).map_err(|_| UrlError::Malformed)?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        _ => return Err(UrlError::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let host = url.host().ok_or(UrlError::NoHost)?;
    if let Host::Domain(name) = host {
        if name.is_empty() {
            return Err(UrlError::NoHost);
        }
    }
    match classify_host(&host) {
        Some(class) if !policy.permits(class) => Err(UrlError::Refused(class)),
        _ => Ok(url),
    }
}

/// Headers the executor sets itself or that would corrupt the request.
const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "idempotency-key",
    "x-correlation-id",
    "upgrade",
];

/// Checks one webhook header: an RFC 9110 token name with a visible-ASCII string value.
///
/// # Errors
/// Why the header is refused.
pub fn validate_header(name: &str, value: &Value) -> Result<(), &'static str> {
    const TCHAR_SPECIALS: &[u8] = b"!#$%&'*+-.^_`|~";
    let name_ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || TCHAR_SPECIALS.contains(&b));
    if !name_ok {
        return Err("is not a valid header name");
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err("is set by TMS and cannot be overridden");
    }
    match value {
        Value::String(v)
            if v.len() <= 8192 && v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) =>
        {
            Ok(())
        }
        Value::String(_) => Err("must be at most 8192 characters of visible ASCII"),
        _ => Err("must be a string"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> AddressClass {
        classify_ip(ip.parse().unwrap())
    }

    #[test]
    fn address_classification() {
        use AddressClass::*;
        let table = [
            ("8.8.8.8", Public),
            ("93.184.216.34", Public),
            ("2606:4700::1111", Public),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", Private),
            ("fd12::1", Private),
            ("127.0.0.1", Loopback),
            ("127.8.9.10", Loopback),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Loopback),
            ("169.254.1.1", LinkLocal),
            ("fe80::1", LinkLocal),
            ("169.254.169.254", Metadata),
            ("169.254.170.2", Metadata),
            ("fd00:ec2::254", Metadata),
            ("::ffff:169.254.169.254", Metadata),
            ("0.0.0.0", Reserved),
            ("::", Reserved),
            ("255.255.255.255", Reserved),
            ("224.0.0.1", Reserved),
            ("192.0.2.1", Reserved),
            ("2001:db8::1", Reserved),
            ("64:ff9b::a00:1", Reserved),
            ("2002:a00:1::", Reserved),
            ("172.32.0.1", Public),
        ];
        for (ip, want) in table {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn default_policy_refuses_everything_but_public_https() {
        let p = WebhookPolicy::default();
        assert!(validate_url("https://hooks.example.com/a?b=c", &p).is_ok());
        let refused = [
            ("http://hooks.example.com", UrlError::Scheme),
            ("ftp://hooks.example.com", UrlError::Scheme),
            ("not a url", UrlError::Malformed),
            ("https://user:pw@hooks.example.com", UrlError::Credentials),
            (
                "https://127.0.0.1/",
                UrlError::Refused(AddressClass::Loopback),
            ),
            (
                "https://localhost:8443/",
                UrlError::Refused(AddressClass::Loopback),
            ),
            (
                "https://api.localhost/",
                UrlError::Refused(AddressClass::Loopback),
            ),
            ("https://[::1]/", UrlError::Refused(AddressClass::Loopback)),
            (
                "https://10.0.0.5/",
                UrlError::Refused(AddressClass::Private),
            ),
            (
                "https://169.254.169.254/latest/meta-data",
                UrlError::Refused(AddressClass::Metadata),
            ),
            (
                "https://metadata.google.internal/",
                UrlError::Refused(AddressClass::Metadata),
            ),
            (
                "https://169.254.3.4/",
                UrlError::Refused(AddressClass::LinkLocal),
            ),
            (
                "https://0.0.0.0/",
                UrlError::Refused(AddressClass::Reserved),
            ),
            (
                "https://2130706433/",
                UrlError::Refused(AddressClass::Loopback),
            ),
            ("https://0x7f.1/", UrlError::Refused(AddressClass::Loopback)),
        ];
        for (url, want) in refused {
            assert_eq!(validate_url(url, &p).unwrap_err(), want, "{url}");
        }
        let long = format!("https://h.example/{}", "a".repeat(URL_MAX_LEN));
        assert_eq!(validate_url(&long, &p).unwrap_err(), UrlError::TooLong);
    }

    #[test]
    fn dev_policy_allows_loopback_over_http_only() {
        let p: WebhookPolicy = "http,loopback".parse().unwrap();
        assert!(validate_url("http://127.0.0.1:9000/hook", &p).is_ok());
        assert!(validate_url("http://localhost:9000/hook", &p).is_ok());
        assert!(validate_url("http://10.0.0.1/", &p).is_err());
        assert!(validate_url("http://169.254.169.254/", &p).is_err());
        let all: WebhookPolicy = "http,loopback,private,link-local".parse().unwrap();
        assert!(
            validate_url("http://169.254.169.254/", &all).is_err(),
            "metadata is never allowed"
        );
        assert!(validate_url("http://169.254.1.1/", &all).is_ok());
        assert!("http,bogus".parse::<WebhookPolicy>().is_err());
        assert_eq!(
            "".parse::<WebhookPolicy>().unwrap(),
            WebhookPolicy::default()
        );
    }

    #[test]
    fn header_rules() {
        use serde_json::json;
        assert!(validate_header("X-Trace-Id", &json!("abc")).is_ok());
        assert!(validate_header("Bad Name", &json!("v")).is_err());
        assert!(validate_header("", &json!("v")).is_err());
        assert!(validate_header("Host", &json!("v")).is_err());
        assert!(validate_header("idempotency-key", &json!("v")).is_err());
        assert!(validate_header("X-A", &json!("line\nbreak")).is_err());
        assert!(validate_header("X-A", &json!(1)).is_err());
    }
}
