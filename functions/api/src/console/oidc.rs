//! OpenID Connect sign-in (authorization code with PKCE): written next.
