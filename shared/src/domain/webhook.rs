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
/// `make dev` allows `http` and `loopback` so a local receiver can be called, and reserves the
/// ports of the stack's own services so no webhook reaches them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    pub allow_http: bool,
    pub allow_loopback: bool,
    pub allow_private: bool,
    pub allow_link_local: bool,
    /// `TMS_WEBHOOK_DENY_PORTS`: ports no webhook to a non-public address may target (the
    /// local stack's emulator, database, API and runner).
    pub denied_ports: PortList,
}

/// A short list of TCP ports, `Copy` so the policy stays a plain value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortList {
    ports: [u16; PortList::CAPACITY],
    len: u8,
}

impl PortList {
    pub const CAPACITY: usize = 16;

    pub fn contains(&self, port: u16) -> bool {
        self.as_slice().contains(&port)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u16] {
        &self.ports[..usize::from(self.len)]
    }
}

/// `3000,4566,55432`: at most [`PortList::CAPACITY`] ports of 1-65535.
impl FromStr for PortList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut list = Self::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let port: u16 = item
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{item:?} is not a port number (1-65535)"))?;
            if list.contains(port) {
                continue;
            }
            if usize::from(list.len) == Self::CAPACITY {
                return Err(format!("at most {} ports", Self::CAPACITY));
            }
            list.ports[usize::from(list.len)] = port;
            list.len += 1;
        }
        Ok(list)
    }
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

    /// Whether a call to `port` of an address of `class` may go out: the class is permitted
    /// and, for a non-public address, the port is not one of the stack's own.
    pub fn permits_port(&self, class: AddressClass, port: u16) -> bool {
        self.permits(class) && (class == AddressClass::Public || !self.denied_ports.contains(port))
    }

    /// Whether some ports are reserved (then a non-public target must be addressed literally,
    /// or as `localhost`, so that its port is checked).
    pub fn reserves_ports(&self) -> bool {
        !self.denied_ports.is_empty()
    }

    pub fn with_denied_ports(self, denied_ports: PortList) -> Self {
        Self {
            denied_ports,
            ..self
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
    #[error("must be an https URL with a host name, such as https://hooks.example.com/path")]
    Malformed,
    #[error("must use https")]
    Scheme,
    #[error("must not contain credentials")]
    Credentials,
    #[error("must be at most 2048 characters")]
    TooLong,
    #[error("has an invalid port (1-65535, no leading zeros)")]
    Port,
    #[error("has a path or query with characters a URL may not carry unescaped")]
    Path,
    #[error("targets a {0} address, which this deployment refuses")]
    Refused(AddressClass),
    #[error("targets port {0} of a {1} address, which a service of this stack uses")]
    ReservedPort(u16, AddressClass),
}

pub const URL_MAX_LEN: usize = 2048;

/// The shape of every webhook URL the default policy accepts, as an ECMA-262 regular expression
/// for the OpenAPI document: https, a DNS host name whose last label starts with a letter (so no
/// address literal), an optional port, and a path and query of RFC 3986 characters (no
/// fragment). [`validate_url`] implements exactly this predicate (and, as every URL parser does,
/// requires an `xn--` label to be valid punycode), then the address rules.
pub const URL_PATTERN: &str = concat!(
    r"^https://(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+",
    r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?",
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
    r"(?:[/?](?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$"
);

fn is_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// A host name of at least two labels whose last label starts with a letter.
fn is_host_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| is_label(l))
        && labels
            .last()
            .is_some_and(|tld| tld.as_bytes()[0].is_ascii_alphabetic())
}

/// Path and query: RFC 3986 characters, or `%` followed by two hex digits.
fn is_valid_tail(tail: &str) -> bool {
    let b = tail.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if b[i].is_ascii_alphanumeric() || b"._~!$&'()*+,;=:@/?-".contains(&b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn is_valid_port(port: &str) -> bool {
    !port.starts_with('0')
        && (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p))
}

/// Checks a webhook URL: the shape of [`URL_PATTERN`] (widened to `http` and to address
/// literals and `localhost` when the policy allows http or non-public targets), then the class
/// of a literal address or well-known name against the policy. Host names are resolved and
/// their addresses checked again when the webhook is called.
///
/// # Errors
/// [`UrlError`] saying what is wrong.
pub fn validate_url(raw: &str, policy: &WebhookPolicy) -> Result<Url, UrlError> {
    if raw.len() > URL_MAX_LEN {
        return Err(UrlError::TooLong);
    }
    let rest = if let Some(rest) = raw.strip_prefix("https://") {
        rest
    } else if let Some(rest) = raw.strip_prefix("http://").filter(|_| policy.allow_http) {
        rest
    } else if raw.contains("://") {
        return Err(UrlError::Scheme);
    } else {
        return Err(UrlError::Malformed);
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(UrlError::Credentials);
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']').ok_or(UrlError::Malformed)?;
        match &authority[close + 1..] {
            "" => (&authority[..=close], None),
            after => (
                &authority[..=close],
                Some(after.strip_prefix(':').ok_or(UrlError::Malformed)?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if port.is_some_and(|p| !is_valid_port(p)) {
        return Err(UrlError::Port);
    }
    if !is_valid_tail(tail) {
        return Err(UrlError::Path);
    }
    let literals_allowed = policy.allow_loopback || policy.allow_private || policy.allow_link_local;
    let is_literal = host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok();
    let is_localhost = host.eq_ignore_ascii_case("localhost");
    if !is_host_name(host) && !(literals_allowed && (is_literal || is_localhost)) {
        return Err(UrlError::Malformed);
    }
    let url = Url::parse(raw).map_err(|_| UrlError::Malformed)?;
    let host = url.host().ok_or(UrlError::Malformed)?;
    let port = url.port_or_known_default().unwrap_or_default();
    match classify_host(&host) {
        // Public services are addressed by name.
        Some(AddressClass::Public) => Err(UrlError::Malformed),
        Some(class) if !policy.permits(class) => Err(UrlError::Refused(class)),
        Some(class) if !policy.permits_port(class, port) => {
            Err(UrlError::ReservedPort(port, class))
        }
        _ => Ok(url),
    }
}

/// Header names: an RFC 9110 token of at most 256 characters.
pub const HEADER_NAME_PATTERN: &str = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$";
/// Header values: visible ASCII, spaces and tabs, at most 8192 characters.
pub const HEADER_VALUE_PATTERN: &str = r"^[\t -~]{0,8192}$";

/// Headers the executor sets itself or that would corrupt the request (compared without case).
pub const RESERVED_HEADERS: [&str; 7] = [
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
        for ok in [
            "https://hooks.example.com/a?b=c",
            "https://a.b",
            "https://x1.example.io:8443/p/a%20th?q=1&r=(2)",
            "https://xn--bcher-kva.example/",
        ] {
            assert!(validate_url(ok, &p).is_ok(), "{ok}");
        }
        let refused = [
            ("http://hooks.example.com", UrlError::Scheme),
            ("ftp://hooks.example.com", UrlError::Scheme),
            ("HTTPS://hooks.example.com", UrlError::Scheme),
            ("not a url", UrlError::Malformed),
            ("https://", UrlError::Malformed),
            ("https://user:pw@hooks.example.com", UrlError::Credentials),
            ("https://hooks.example.com:0/", UrlError::Port),
            ("https://hooks.example.com:080/", UrlError::Port),
            ("https://hooks.example.com:65536/", UrlError::Port),
            ("https://hooks.example.com/a b", UrlError::Path),
            ("https://hooks.example.com/a<b", UrlError::Path),
            ("https://hooks.example.com/%zz", UrlError::Path),
            ("https://hooks.example.com/#frag", UrlError::Path),
            ("https://hooks.example.com./", UrlError::Malformed),
            ("https://-bad.example.com/", UrlError::Malformed),
            ("https://h\u{e9}.example.com/", UrlError::Malformed),
            ("https://127.0.0.1/", UrlError::Malformed),
            ("https://93.184.216.34/", UrlError::Malformed),
            ("https://localhost:8443/", UrlError::Malformed),
            ("https://[::1]/", UrlError::Malformed),
            ("https://10.0.0.5/", UrlError::Malformed),
            (
                "https://169.254.169.254/latest/meta-data",
                UrlError::Malformed,
            ),
            ("https://2130706433/", UrlError::Malformed),
            ("https://0x7f.1/", UrlError::Malformed),
            (
                "https://api.localhost/",
                UrlError::Refused(AddressClass::Loopback),
            ),
            (
                "https://metadata.google.internal/",
                UrlError::Refused(AddressClass::Metadata),
            ),
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
        assert!(validate_url("http://[::1]:9000/hook", &p).is_ok());
        assert_eq!(
            validate_url("http://10.0.0.1/", &p).unwrap_err(),
            UrlError::Refused(AddressClass::Private)
        );
        assert_eq!(
            validate_url("http://169.254.169.254/", &p).unwrap_err(),
            UrlError::Refused(AddressClass::Metadata)
        );
        assert_eq!(
            validate_url("http://8.8.8.8/", &p).unwrap_err(),
            UrlError::Malformed
        );
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
    fn the_stacks_own_ports_are_refused_even_where_loopback_is_allowed() {
        let p = WebhookPolicy {
            denied_ports: "3000, 4566,55432".parse().unwrap(),
            .."http,loopback".parse().unwrap()
        };
        assert!(validate_url("http://127.0.0.1:9000/hook", &p).is_ok());
        for url in [
            "http://127.0.0.1:4566/tms-data/imports/acme/x.jsonl",
            "http://localhost:3000/v1/tasks",
            "http://[::1]:55432/",
            "http://127.0.0.2:4566/",
        ] {
            assert!(
                matches!(
                    validate_url(url, &p),
                    Err(UrlError::ReservedPort(_, AddressClass::Loopback))
                ),
                "{url}"
            );
        }
        assert!(
            p.permits_port(AddressClass::Public, 4566),
            "public hosts are not the stack's"
        );
        assert!(!p.permits_port(AddressClass::Loopback, 4566));
        assert!("1,2,x".parse::<PortList>().is_err());
        assert!("0".parse::<PortList>().is_err());
        let many: String = (1..=17)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(many.parse::<PortList>().is_err());
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

    mod pattern {
        use super::super::*;
        use proptest::prelude::*;

        fn pattern() -> regex::Regex {
            regex::Regex::new(URL_PATTERN).expect("URL_PATTERN compiles")
        }

        proptest! {
            /// Every URL the documented pattern describes is accepted (the OpenAPI document
            /// promises it), unless it names a well-known internal host.
            #[test]
            fn urls_matching_the_pattern_are_accepted(url in URL_PATTERN.trim_start_matches('^').trim_end_matches('$')) {
                prop_assume!(url.len() <= URL_MAX_LEN);
                // An `xn--` label must also be valid punycode, which no regular expression says.
                prop_assume!(!url.to_ascii_lowercase().contains("xn--"));
                let result = validate_url(&url, &WebhookPolicy::default());
                let internal = matches!(result, Err(UrlError::Refused(AddressClass::Loopback | AddressClass::Metadata)));
                prop_assert!(result.is_ok() || internal, "{url}: {result:?}");
            }

            /// And nothing the pattern rejects is accepted.
            #[test]
            fn urls_outside_the_pattern_are_refused(url in "https?://[a-z0-9.:@\\[\\]%/?#<> -]{0,40}") {
                if !pattern().is_match(&url) {
                    prop_assert!(validate_url(&url, &WebhookPolicy::default()).is_err(), "{url}");
                }
            }
        }
    }
}
