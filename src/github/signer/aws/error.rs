//! What can go wrong with AWS, each in one line that says what to fix, and AWS's error answers
//! read in either of its shapes (JSON `__type` and `message`, or XML `Code` and `Message`).
//!
//! No line shows a secret: AWS's own messages are cleaned of every secret we hold before they
//! are quoted, and credentials are named by where they came from, never by their value.

use crate::messages;

#[derive(Debug, thiserror::Error)]
pub(crate) enum AwsError {
    #[error(
        "no AWS credentials found (tried {tried}): give the job `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, or `AWS_ROLE_ARN` with a web identity (aws-actions/configure-aws-credentials sets them)"
    )]
    NoCredentials { tried: String },
    /// A source of credentials is configured but cannot be used; the text says which and why.
    #[error("{0}")]
    Credentials(String),
    #[error(
        "the AWS credentials from {from} have expired ({code}): get fresh ones (configure-aws-credentials's session lasts an hour unless `role-duration-seconds` says more)"
    )]
    Expired { from: String, code: String },
    #[error(
        "AWS does not accept the credentials from {from} ({code}): check the access key id, its secret and the session token that goes with them"
    )]
    Refused { from: String, code: String },
    #[error(
        "AWS denies `{action}` on `{key}` to the credentials from {from}: allow it in the key's policy or the role's ({message})"
    )]
    Denied {
        action: String,
        key: String,
        from: String,
        message: String,
    },
    #[error(
        "the KMS key `{key}` is not found in `{region}`: check the key id, alias or ARN, and the region (a key id or an alias is looked up in the region in use)"
    )]
    NotFound { key: String, region: String },
    #[error(
        "the KMS key `{key}` cannot sign the App's JWT: {why}; it must be an RSA key (`RSA_2048` or larger) with key usage `SIGN_VERIFY`"
    )]
    WrongKeyType { key: String, why: String },
    #[error(
        "the KMS key `{key}` is in `{key_region}`, but the region in use is `{region}`: set the AWS region to `{key_region}`, or name a key of `{region}`"
    )]
    RegionMismatch {
        key: String,
        key_region: String,
        region: String,
    },
    #[error("the KMS key `{key}` cannot be used ({code}): enable it, or cancel its deletion")]
    Disabled { key: String, code: String },
    #[error(
        "AWS refused the request's time as too far from its clock ({message}): set the runner's clock right"
    )]
    ClockSkew { message: String },
    #[error("no AWS region: set the AWS region setting, `AWS_REGION` or `AWS_DEFAULT_REGION`")]
    NoRegion,
    #[error("`{region}` (from {from}) is not an AWS region: give one like `eu-west-1`")]
    BadRegion { region: String, from: &'static str },
    /// Any other error AWS answered.
    #[error("{service} answered {status} {code}{}", messages::colon_then(.message))]
    Service {
        service: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error(
        "{service} at {url} gave no usable answer within the {allowed}s allowed; last error: {last}"
    )]
    Deadline {
        service: String,
        url: String,
        allowed: u64,
        last: String,
    },
    #[error("{service} answered with a body we cannot read: {detail}")]
    Decode { service: String, detail: String },
    #[error("{0}")]
    Setup(String),
}

/// An error code as AWS's services name it (`NotFoundException`, `AssumeRoleUnauthorizedAccess`):
/// a name, so only a name's letters, dots and underscores are kept, never a token's digits.
pub(crate) fn code_name(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphabetic() || *c == '.' || *c == '_')
        .take(64)
        .collect()
}

/// An error answer's code and message, cleaned for showing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answered {
    pub(crate) status: u16,
    /// The bare code (`NotFoundException`), without the namespace JSON answers may put first,
    /// as `code_name` keeps it.
    pub(crate) code: String,
    pub(crate) message: String,
}

impl Answered {
    /// Read from a JSON body (`__type`, `message` or `Message`), an XML one (`<Code>`,
    /// `<Message>`), or the `x-amzn-ErrorType` header, whichever says.
    pub(crate) fn read(status: u16, error_type: Option<&str>, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let (code, message) = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(json) => {
                let field = |names: &[&str]| {
                    names
                        .iter()
                        .find_map(|name| json.get(*name)?.as_str().map(str::to_owned))
                };
                (field(&["__type", "code"]), field(&["message", "Message"]))
            }
            Err(_) => (
                xml_text(&text, "Code").map(unescape),
                xml_text(&text, "Message").map(unescape),
            ),
        };
        let code = code
            .or_else(|| error_type.map(str::to_owned))
            .unwrap_or_default();
        // `com.amazonaws.kms#NotFoundException`, `NotFoundException:http://…` and the bare name.
        let code = code.rsplit('#').next().unwrap_or_default();
        let code = code.split(':').next().unwrap_or_default();
        Self {
            status,
            code: code_name(code),
            message: messages::foreign(&message.unwrap_or_default()),
        }
    }

    /// The error for an answer no caller has a better word for.
    pub(crate) fn into_error(self, service: &str) -> AwsError {
        AwsError::Service {
            service: service.to_owned(),
            status: self.status,
            code: if self.code.is_empty() {
                "(no error code)".into()
            } else {
                self.code
            },
            message: self.message,
        }
    }

    /// The credentials' own faults, which every service answers alike; `from` says where they
    /// came from.
    pub(crate) fn credentials_error(&self, from: &str) -> Option<AwsError> {
        let code = self.code.as_str();
        let lower = self.message.to_ascii_lowercase();
        if code == "RequestTimeTooSkewed"
            || (code == "InvalidSignatureException" && lower.contains("signature expired"))
        {
            return Some(AwsError::ClockSkew {
                message: self.message.clone(),
            });
        }
        let expired = ["ExpiredToken", "ExpiredTokenException", "RequestExpired"];
        if expired.contains(&code) {
            return Some(AwsError::Expired {
                from: from.to_owned(),
                code: code.to_owned(),
            });
        }
        let refused = [
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
            "InvalidSignatureException",
            "IncompleteSignature",
            "MissingAuthenticationToken",
            "AuthFailure",
        ];
        refused.contains(&code).then(|| AwsError::Refused {
            from: from.to_owned(),
            code: code.to_owned(),
        })
    }
}

/// The text of the first `<tag>…</tag>` in `xml`.
pub(crate) fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..end].trim())
}

/// XML's five entities made their characters again.
pub(crate) fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_error_gives_its_bare_code_and_message() {
        let body = br#"{"__type":"com.amazonaws.kms#NotFoundException","message":"Key 'k' does not exist"}"#;
        let answered = Answered::read(400, None, body);
        assert_eq!(answered.code, "NotFoundException");
        assert_eq!(answered.message, "Key 'k' does not exist");
    }

    #[test]
    fn an_xml_error_gives_its_code_and_message() {
        let body = b"<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match &amp; so on</Message></Error></Errors></ErrorResponse>";
        let answered = Answered::read(403, None, body);
        assert_eq!(answered.code, "SignatureDoesNotMatch");
        assert_eq!(
            answered.message,
            "The request signature we calculated does not match & so on"
        );
    }

    #[test]
    fn a_code_is_kept_to_a_names_characters() {
        let body = br#"{"__type":"ghs_0123456789abcdefghij\u001b[31m","message":"m"}"#;
        let answered = Answered::read(400, None, body);
        assert_eq!(answered.code, "ghs_abcdefghijm");
    }

    #[test]
    fn the_error_type_header_stands_in_for_a_body_without_a_code() {
        let answered = Answered::read(400, Some("ThrottlingException:http://x/"), b"{}");
        assert_eq!(answered.code, "ThrottlingException");
    }

    #[test]
    fn the_credentials_faults_are_told_apart() {
        let fault = |code: &str, message: &str| {
            Answered {
                status: 400,
                code: code.into(),
                message: message.into(),
            }
            .credentials_error("`AWS_ACCESS_KEY_ID`")
        };
        assert!(matches!(
            fault(
                "ExpiredTokenException",
                "The security token included in the request is expired"
            ),
            Some(AwsError::Expired { .. })
        ));
        assert!(matches!(
            fault(
                "InvalidSignatureException",
                "Signature expired: 20261207T100000Z is now earlier than …"
            ),
            Some(AwsError::ClockSkew { .. })
        ));
        assert!(matches!(
            fault("SignatureDoesNotMatch", "…"),
            Some(AwsError::Refused { .. })
        ));
        assert!(fault("NotFoundException", "…").is_none());
    }

    #[test]
    fn a_secret_aws_echoes_is_not_shown() {
        let secret = crate::secret::Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzKEY".into());
        let body = format!(
            r#"{{"__type":"AccessDeniedException","message":"no for {}"}}"#,
            secret.expose()
        );
        let shown = Answered::read(400, None, body.as_bytes())
            .into_error("KMS")
            .to_string();
        assert!(!shown.contains(secret.expose()), "{shown}");
    }
}
