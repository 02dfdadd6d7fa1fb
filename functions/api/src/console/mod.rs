//! The web console at `/console`: server-rendered pages over the same ports, scopes and roles as
//! the API, signed in with an API token or through the deployment's OpenID Connect issuer.

pub mod oidc;
