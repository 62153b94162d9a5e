//! The portable suite: what runs on Linux, macOS and Windows alike, as CI runs it on each. The
//! native entry under node, with the real git against the test git server, as on a runner of
//! each platform.

/// setup, the tools and revoke, as any CI runs them.
mod anywhere;
/// The native entry: node runs the checked binary in place.
mod native;
