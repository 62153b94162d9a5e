//! Where AWS's services are, and which region is in use: the SDKs' variables, read as they do.
//!
//! `AWS_ENDPOINT_URL_<SERVICE>` wins over `AWS_ENDPOINT_URL`, and both are ignored when
//! `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is `true`; otherwise a service is at its regional
//! address. The region is the one given, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the
//! region a key's ARN names. Whatever the endpoint, requests are signed for the real region.

use url::Url;

use super::error::AwsError;
use crate::env::Env;

/// The two services we call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Kms,
    Sts,
}

impl Service {
    /// The name in SigV4's scope, in the default host and, upper-cased, in the variable.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::Kms => "kms",
            Service::Sts => "sts",
        }
    }
}

/// The URL `service` is reached at in `region`, as `env` configures it.
pub(crate) fn endpoint(env: &Env, service: Service, region: &str) -> Result<Url, AwsError> {
    let ignored = env
        .given("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let per_service = format!("AWS_ENDPOINT_URL_{}", service.name().to_ascii_uppercase());
    let configured = [per_service.as_str(), "AWS_ENDPOINT_URL"]
        .into_iter()
        .find_map(|name| Some((name, env.given(name)?.trim())))
        .filter(|_| !ignored);
    match configured {
        Some((name, text)) => {
            let url = Url::parse(text).map_err(|e| {
                AwsError::Setup(format!(
                    "`{name}` is not a URL ({e}): give one like `https://kms.example.com`"
                ))
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(AwsError::Setup(format!(
                    "`{name}` must be an http or https URL with a host"
                )));
            }
            Ok(url)
        }
        None => Url::parse(&format!(
            "https://{}.{region}.{}",
            service.name(),
            dns_suffix(region)
        ))
        .map_err(|e| AwsError::Setup(format!("no endpoint for region `{region}`: {e}"))),
    }
}

/// The domain of the partition `region` is in.
fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// The region in use: `given` (the setting), else the SDKs' variables, else the region of the
/// key's ARN. Checked to be a region's shape, as it goes into a host name.
pub(crate) fn region(given: Option<&str>, env: &Env, key: &str) -> Result<String, AwsError> {
    let (named, from) = match given.map(str::trim).filter(|g| !g.is_empty()) {
        Some(region) => (region, "the region setting"),
        None => match ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .into_iter()
            .find_map(|name| Some((env.given(name)?.trim(), name)))
        {
            Some(found) => found,
            None => (arn_region(key).ok_or(AwsError::NoRegion)?, "the key's ARN"),
        },
    };
    let shaped = !named.is_empty()
        && named.len() <= 32
        && named
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !shaped {
        return Err(AwsError::BadRegion {
            region: crate::messages::short(named),
            from,
        });
    }
    Ok(named.to_owned())
}

/// The region a KMS ARN names (`arn:aws:kms:eu-west-1:111122223333:key/…`), if the key is an
/// ARN.
pub(crate) fn arn_region(key: &str) -> Option<&str> {
    let mut parts = key.strip_prefix("arn:")?.splitn(5, ':');
    let (_partition, service, region) = (parts.next()?, parts.next()?, parts.next()?);
    (service == "kms" && !region.is_empty()).then_some(region)
}

/// A key's ARN in a region other than `region`: the key cannot be reached there.
pub(crate) fn check_key_region(key: &str, region: &str) -> Result<(), AwsError> {
    match arn_region(key) {
        Some(key_region) if key_region != region => Err(AwsError::RegionMismatch {
            key: key.to_owned(),
            key_region: key_region.to_owned(),
            region: region.to_owned(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn a_service_is_at_its_regional_address_by_default() {
        let env = Env::default();
        assert_eq!(
            endpoint(&env, Service::Kms, "eu-west-1").unwrap().as_str(),
            "https://kms.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            endpoint(&env, Service::Sts, "cn-north-1").unwrap().as_str(),
            "https://sts.cn-north-1.amazonaws.com.cn/"
        );
    }

    #[test]
    fn the_services_own_variable_wins_over_the_general_one() {
        let env = Env::from_pairs([
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1/"),
            ("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:2/"),
        ]);
        assert_eq!(
            endpoint(&env, Service::Kms, "us-east-1").unwrap().as_str(),
            "http://127.0.0.1:2/"
        );
        assert_eq!(
            endpoint(&env, Service::Sts, "us-east-1").unwrap().as_str(),
            "http://127.0.0.1:1/"
        );
    }

    #[test]
    fn configured_endpoints_can_be_ignored() {
        let env = Env::from_pairs([
            ("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:2/"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        assert_eq!(
            endpoint(&env, Service::Kms, "us-east-1").unwrap().as_str(),
            "https://kms.us-east-1.amazonaws.com/"
        );
    }

    #[test]
    fn a_bad_endpoint_is_named() {
        let env = Env::from_pairs([("AWS_ENDPOINT_URL", "kms.local")]);
        let err = endpoint(&env, Service::Kms, "us-east-1").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`AWS_ENDPOINT_URL` is not a URL"),
            "{err}"
        );
    }

    #[test]
    fn the_region_is_the_setting_then_the_variables_then_the_arn() {
        let both = Env::from_pairs([
            ("AWS_REGION", "us-east-2"),
            ("AWS_DEFAULT_REGION", "us-west-2"),
        ]);
        let default_only = Env::from_pairs([("AWS_DEFAULT_REGION", "us-west-2")]);
        let none = Env::default();
        assert_eq!(
            region(Some("ap-south-1"), &both, ARN).unwrap(),
            "ap-south-1"
        );
        assert_eq!(region(None, &both, ARN).unwrap(), "us-east-2");
        assert_eq!(region(None, &default_only, ARN).unwrap(), "us-west-2");
        assert_eq!(region(None, &none, ARN).unwrap(), "eu-west-1");
        assert!(matches!(
            region(None, &none, "alias/app"),
            Err(AwsError::NoRegion)
        ));
    }

    #[test]
    fn a_region_that_is_no_region_is_refused() {
        let err = region(Some("eu-west-1.evil.example/"), &Env::default(), "k").unwrap_err();
        assert!(err.to_string().contains("is not an AWS region"), "{err}");
    }

    #[test]
    fn a_key_arn_in_another_region_is_a_mismatch() {
        assert!(check_key_region(ARN, "eu-west-1").is_ok());
        assert!(check_key_region("alias/app", "us-east-1").is_ok());
        let err = check_key_region(ARN, "us-east-1").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the KMS key `{ARN}` is in `eu-west-1`, but the region in use is `us-east-1`: set the AWS region to `eu-west-1`, or name a key of `us-east-1`"
            )
        );
    }
}
