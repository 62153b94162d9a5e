//! What can go wrong with a call, said so that a person can act on it.

use std::time::Duration;

use reqwest::Method;

use super::{Answer, MAX_BODY};
use crate::messages;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{method} {url} answered {status}{}", messages::colon_then(.message))]
    Status {
        method: Method,
        url: String,
        status: u16,
        message: String,
    },
    #[error("{method} {url} failed: {detail}")]
    Network {
        method: Method,
        url: String,
        detail: String,
    },
    #[error(
        "{method} {url} got no usable answer within the {}s allowed; last error: {last}",
        .allowed.as_secs()
    )]
    Deadline {
        method: Method,
        url: String,
        allowed: Duration,
        last: String,
    },
    #[error("cannot trust the TLS certificate of {url} ({detail})")]
    Untrusted { url: String, detail: String },
    #[error("{method} {url} answered with a body we cannot read: {detail}")]
    Decode {
        method: Method,
        url: String,
        detail: String,
    },
    #[error("{0}")]
    Setup(String),
}

impl ApiError {
    /// What went wrong, without the request line: for a URL that must not be shown.
    pub(crate) fn detail(&self) -> String {
        match self {
            ApiError::Status {
                status, message, ..
            } => format!("{status}{}", messages::colon_then(message)),
            ApiError::Network { detail, .. } => detail.clone(),
            ApiError::Deadline { allowed, last, .. } => format!(
                "no usable answer within the {}s allowed; last error: {last}",
                allowed.as_secs()
            ),
            ApiError::Untrusted { detail, .. } => {
                format!("cannot trust the server's TLS certificate ({detail})")
            }
            ApiError::Decode { detail, .. } => format!("a body we cannot read: {detail}"),
            ApiError::Setup(text) => text.clone(),
        }
    }

    /// The error as a log line may show it: it quotes the server, which may quote our secrets or
    /// start a line of its own.
    pub(crate) fn shown(&self) -> String {
        messages::shown(&self.to_string())
    }

    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The error an answer that was not a success stands for.
pub(super) fn answer_error(method: Method, url: String, answer: &Answer) -> ApiError {
    if answer.oversized {
        return ApiError::Decode {
            method,
            url,
            detail: format!(
                "{} answered more than {} KiB",
                answer.status,
                MAX_BODY / 1024
            ),
        };
    }
    status_error(method, url, answer)
}

fn status_error(method: Method, url: String, answer: &Answer) -> ApiError {
    ApiError::Status {
        method,
        url,
        status: answer.status,
        message: messages::foreign(answer.message()),
    }
}

/// Whether rustls refused the server's certificate, somewhere down the error's sources.
pub(super) fn is_untrusted_certificate(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(mut e) = source {
        // An io::Error hides the error it wraps from `source()`, and may wrap another io::Error.
        while let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            e = inner;
        }
        if matches!(
            e.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        ) {
            return true;
        }
        source = e.source();
    }
    false
}

/// What lies under reqwest's "error sending request for url (…)": the URL is shown already.
pub(crate) fn cause(err: &reqwest::Error) -> String {
    messages::capped(&match std::error::Error::source(err) {
        Some(source) => chain(source),
        None => err.to_string(),
    })
}

/// An error and its sources on one line: reqwest's own text alone hides the cause.
pub(super) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detail_never_names_the_url() {
        let url = || "https://private.example/idtoken?api-version=2.0".to_owned();
        let errors = [
            ApiError::Status {
                method: Method::GET,
                url: url(),
                status: 500,
                message: "busy".into(),
            },
            ApiError::Network {
                method: Method::GET,
                url: url(),
                detail: "connection refused".into(),
            },
            ApiError::Deadline {
                method: Method::GET,
                url: url(),
                allowed: Duration::from_secs(3),
                last: "500: busy".into(),
            },
            ApiError::Untrusted {
                url: url(),
                detail: "unknown issuer".into(),
            },
            ApiError::Decode {
                method: Method::GET,
                url: url(),
                detail: "is cut short".into(),
            },
        ];
        for err in errors {
            assert!(!err.detail().contains("private.example"), "{err}");
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        source: Option<Box<Layer>>,
    }

    fn layers(texts: &[&'static str]) -> Option<Box<Layer>> {
        let (text, rest) = texts.split_first()?;
        Some(Box::new(Layer {
            text,
            source: layers(rest),
        }))
    }

    #[test]
    fn error_chain_is_one_line_and_says_each_cause_once() {
        // The middle cause's text is in the outer message already, as hyper's often is.
        let err = layers(&[
            "error sending request: connection refused",
            "connection refused",
            "os error 111",
        ])
        .unwrap();
        assert_eq!(
            chain(&*err),
            "error sending request: connection refused: os error 111"
        );
    }
}
