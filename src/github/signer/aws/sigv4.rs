//! SigV4: an AWS request signed with its credentials, by hand with ring's HMAC and SHA-256.
//!
//! Pure: the time comes in, in AWS's clock. Only what our calls need is here: the URL's host,
//! its path as the URL percent-encodes it (encoded once more, as every service but S3 wants) and
//! its query, and the headers the caller names, all of which are signed.

use ring::{digest, hmac};
use url::Url;

use super::credentials::Credentials;
use crate::clock::ServerTime;
use crate::github::hosts::host_and_port;

/// The service and region a request is signed for: the credential scope's middle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub(crate) region: &'a str,
    pub(crate) service: &'a str,
}

/// A request before signing.
#[derive(Debug)]
pub(crate) struct Unsigned<'a> {
    pub(crate) method: &'a str,
    /// Its host and port make the `Host` header, as the client sends it.
    pub(crate) url: &'a Url,
    /// Headers sent and signed besides `host`, `x-amz-date` and `x-amz-security-token`.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) body: &'a [u8],
}

/// The headers that sign `request`, to be sent with it: `x-amz-date`, `x-amz-security-token`
/// with a session token, and `authorization`. `at` is on AWS's clock.
pub(crate) fn sign(
    request: &Unsigned<'_>,
    credentials: &Credentials,
    scope: Scope<'_>,
    at: ServerTime,
) -> Vec<(&'static str, String)> {
    let stamp = amz_date(at);
    let date = &stamp[..8];
    let mut added = vec![("x-amz-date", stamp.clone())];
    if let Some(token) = &credentials.session_token {
        added.push(("x-amz-security-token", token.expose().to_owned()));
    }
    let host = host_and_port(request.url).unwrap_or_default();
    let mut headers: Vec<(String, String)> = std::iter::once(("host", host.as_str()))
        .chain(added.iter().map(|(name, value)| (*name, value.as_str())))
        .chain(request.headers.iter().copied())
        .map(|(name, value)| (name.to_ascii_lowercase(), collapse(value)))
        .collect();
    headers.sort();
    let signed: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
    let signed = signed.join(";");
    let canonical = canonical_request(request, &headers, &signed);
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{credential_scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let key = signing_key(credentials.secret.expose(), date, scope);
    let signature = hex(hmac::sign(&key, to_sign.as_bytes()).as_ref());
    added.push((
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
    added
}

/// `YYYYMMDD'T'HHMMSS'Z'` in UTC.
pub(crate) fn amz_date(at: ServerTime) -> String {
    at.rfc3339().replace(['-', ':'], "")
}

fn canonical_request(request: &Unsigned<'_>, headers: &[(String, String)], signed: &str) -> String {
    let mut text = format!(
        "{}\n{}\n{}\n",
        request.method,
        canonical_path(request.url.path()),
        canonical_query(request.url)
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}:{value}\n"));
    }
    text.push_str(&format!(
        "\n{signed}\n{}",
        hex(digest::digest(&digest::SHA256, request.body).as_ref())
    ));
    text
}

/// The path encoded once more, `/` kept; an empty path is `/`.
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// The query's pairs encoded, sorted by name then value, joined with `&`; none is the empty
/// line.
fn canonical_query(url: &Url) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(name, value)| (encode(&name), encode(&value)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 percent-encoding of everything but the unreserved characters, in upper-case hex.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A header's value trimmed, with runs of blanks inside made one space.
fn collapse(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `AWS4` + secret, then the date, region, service and `aws4_request`, each an HMAC key for the
/// next.
fn signing_key(secret: &str, date: &str, scope: Scope<'_>) -> hmac::Key {
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret}").as_bytes());
    for part in [date, scope.region, scope.service, "aws4_request"] {
        key = hmac::Key::new(
            hmac::HMAC_SHA256,
            hmac::sign(&key, part.as_bytes()).as_ref(),
        );
    }
    key
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    /// 2015-08-30T12:36:00Z, the time of AWS's published SigV4 test suite.
    const SUITE_TIME: ServerTime = ServerTime(1_440_938_160);

    fn credentials(session_token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: session_token.map(|t| Secret::new(t.into())),
            from: "a test".into(),
        }
    }

    fn authorization(
        request: &Unsigned<'_>,
        session_token: Option<&str>,
        scope: Scope<'_>,
    ) -> String {
        sign(request, &credentials(session_token), scope, SUITE_TIME)
            .into_iter()
            .find(|(name, _)| *name == "authorization")
            .unwrap()
            .1
    }

    const SUITE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
    };
    const KMS: Scope<'static> = Scope {
        region: "us-east-1",
        service: "kms",
    };

    fn url(text: &str) -> &'static Url {
        Box::leak(Box::new(Url::parse(text).unwrap()))
    }

    fn vanilla(method: &'static str) -> Unsigned<'static> {
        Unsigned {
            method,
            url: url("https://example.amazonaws.com/"),
            headers: &[],
            body: b"",
        }
    }

    #[test]
    fn the_date_is_sigv4s_basic_form() {
        assert_eq!(amz_date(SUITE_TIME), "20150830T123600Z");
    }

    #[test]
    fn aws_published_get_and_post_vanilla_cases_sign_as_documented() {
        assert_eq!(
            authorization(&vanilla("GET"), None, SUITE),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(
            authorization(&vanilla("POST"), None, SUITE),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
    }

    // The expected values below are botocore's (SigV4Auth) for the same request and time.
    fn kms_sign(headers: &'static [(&'static str, &'static str)]) -> Unsigned<'static> {
        Unsigned {
            method: "POST",
            url: url("https://kms.us-east-1.amazonaws.com/"),
            headers,
            body: br#"{"KeyId":"alias/app"}"#,
        }
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let request = kms_sign(&[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "TrentService.Sign"),
        ]);
        let headers = sign(
            &request,
            &credentials(Some("session-token-value")),
            KMS,
            SUITE_TIME,
        );
        assert!(headers.contains(&("x-amz-security-token", "session-token-value".into())));
        assert_eq!(
            authorization(&request, Some("session-token-value"), KMS),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=eeabdfc96fe1999502faa983c74808a66a4d06069add524ecbfba1fae23505b8"
        );
    }

    #[test]
    fn the_headers_order_and_case_do_not_change_the_signature() {
        let expected = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=fcfffcf071e659112f1998cc180ce24f5f0fed5925da135ca0c15cf15910a6ec";
        let given = kms_sign(&[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "TrentService.Sign"),
        ]);
        let reversed = kms_sign(&[
            ("x-amz-target", "  TrentService.Sign "),
            ("content-type", "application/x-amz-json-1.1"),
        ]);
        assert_eq!(authorization(&given, None, KMS), expected);
        assert_eq!(authorization(&reversed, None, KMS), expected);
        assert_eq!(
            sign(&given, &credentials(None), KMS, SUITE_TIME).len(),
            2,
            "no session token header without a session token"
        );
    }

    #[test]
    fn a_query_is_sorted_and_encoded_and_a_path_kept() {
        let request = Unsigned {
            method: "POST",
            url: url("http://127.0.0.1:4566/base/?b=2&a=x%20y"),
            headers: &[("Content-Type", "application/x-amz-json-1.1")],
            body: b"",
        };
        assert_eq!(canonical_query(request.url), "a=x%20y&b=2");
        assert_eq!(canonical_query(url("http://127.0.0.1:4566/")), "");
        assert_eq!(
            authorization(&request, None, KMS),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=dc58fe7e6cf5d8fe87edc259b2d47eec066bd88bce3a33bef7c20013f7cbead0"
        );
    }

    #[test]
    fn a_path_is_encoded_once_more_and_an_empty_one_is_the_root() {
        assert_eq!(canonical_path(""), "/");
        assert_eq!(canonical_path("/a%20b/c"), "/a%2520b/c");
    }
}
