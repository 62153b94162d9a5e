//! STS's `AssumeRoleWithWebIdentity`: a web identity (an OIDC token) exchanged for a role's
//! temporary credentials, at every use.
//!
//! The request is a form POST, unsigned (the token is the proof), and the answer is XML.

use super::credentials::Credentials;
use super::endpoints::{self, Service};
use super::error::{AwsError, unescape, xml_text};
use super::http::{Aws, Call};
use crate::env::Env;
use crate::messages;
use crate::secret::Secret;

/// The role `role`'s credentials for the web identity `token` (from `whence`), asked of STS in
/// `region`.
pub(crate) async fn assume_role_with_web_identity(
    aws: &Aws,
    env: &Env,
    region: &str,
    role: &str,
    session: &str,
    token: &Secret,
    whence: &str,
) -> Result<Credentials, AwsError> {
    let url = endpoints::endpoint(env, Service::Sts, region)?;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", role)
        .append_pair("RoleSessionName", session)
        .append_pair("WebIdentityToken", token.expose())
        .finish();
    let call = Call {
        service: "STS",
        url: &url,
        signed: None,
        headers: &[(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )],
        body: body.as_bytes(),
    };
    let shown_role = messages::short(role);
    let answer = match aws.post(&call).await? {
        Ok(answer) => answer,
        Err(refused) => {
            return Err(AwsError::Credentials(format!(
                "STS refused to assume `{shown_role}` with {whence} ({}{}): check the role's trust policy for this identity",
                refused.code,
                messages::colon_then(&refused.message)
            )));
        }
    };
    read_credentials(&String::from_utf8_lossy(&answer), &shown_role)
}

/// The credentials in STS's answer.
fn read_credentials(xml: &str, role: &str) -> Result<Credentials, AwsError> {
    let field = |tag: &str| {
        xml_text(xml, tag)
            .map(unescape)
            .ok_or_else(|| AwsError::Decode {
                service: "STS".into(),
                detail: format!("its answer has no `{tag}`"),
            })
    };
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?,
        secret: Secret::new(field("SecretAccessKey")?),
        session_token: Some(Secret::new(field("SessionToken")?)),
        from: format!("the role `{role}`"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_are_read_from_stss_answer() {
        let xml = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
            <SessionToken>FQoGZXIvYXdzE&amp;tok</SessionToken><SecretAccessKey>wJalrXUtnFEMI/K7MDENG</SecretAccessKey>\
            <Expiration>2026-12-07T19:00:00Z</Expiration><AccessKeyId>ASIAEXAMPLE</AccessKeyId>\
            </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        let found = read_credentials(xml, "arn:aws:iam::1:role/r").unwrap();
        assert_eq!(found.access_key_id, "ASIAEXAMPLE");
        assert_eq!(found.secret.expose(), "wJalrXUtnFEMI/K7MDENG");
        assert_eq!(found.session_token.unwrap().expose(), "FQoGZXIvYXdzE&tok");
        assert_eq!(found.from, "the role `arn:aws:iam::1:role/r`");
    }

    #[test]
    fn an_answer_without_credentials_is_named() {
        let err = read_credentials("<x/>", "r").unwrap_err();
        assert_eq!(
            err.to_string(),
            "STS answered with a body we cannot read: its answer has no `AccessKeyId`"
        );
    }
}
