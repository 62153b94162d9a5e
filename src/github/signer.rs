//! Who signs the App's JWT: the App's key here, or something outside that holds it.
//!
//! A signer turns the JWT's signing input into an RS256 signature (RSASSA-PKCS1-v1_5 over its
//! SHA-256). Our own key signs with `ring` and needs no check. A signature from outside is
//! decoded from the forms such tools print (`signature`), its length checked, and verified when
//! the App's public key is known (`public`), so that a wrong key or algorithm is told here, in
//! our words, rather than by GitHub's bare 401. A command (`command`) is one such signer.

pub(crate) mod aws;
mod command;
mod public;
mod signature;

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::RSA_PKCS1_SHA256;

pub(crate) use self::aws::AwsKms;
pub(crate) use self::command::SignerCommand;
pub(crate) use self::public::PublicKey;
pub(crate) use self::signature::decode;
use super::key::PrivateKey;

/// What signs the App's JWTs.
#[derive(Clone)]
pub(crate) enum Signer {
    /// The App's private key, held here.
    Key(PrivateKey),
    /// A command that signs with a key held elsewhere.
    Command(SignerCommand),
    /// The App's key in AWS KMS, reached with the step's own AWS credentials.
    AwsKms(AwsKms),
}

impl Signer {
    /// The RS256 signature of `message`, checked when it came from outside.
    pub(crate) async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match self {
            Signer::Key(key) => {
                let pair = key.pair();
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(|_| SignError::Random)?;
                Ok(signature)
            }
            Signer::Command(command) => command.sign(message, command::LIMITS).await,
            Signer::AwsKms(kms) => kms.sign(message).await,
        }
    }

    /// The App's private key, when it is held here: the one signer a store keeps a file for.
    pub(crate) fn key(&self) -> Option<&PrivateKey> {
        match self {
            Signer::Key(key) => Some(key),
            Signer::Command(_) => None,
            Signer::AwsKms(_) => None,
        }
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::Key(key) => write!(f, "Signer::Key({key:?})"),
            Signer::Command(command) => write!(f, "Signer::Command({command:?})"),
            Signer::AwsKms(kms) => write!(f, "Signer::{kms:?}"),
        }
    }
}

/// Check a signature from outside: `printed` decoded, of the length the key's signatures have,
/// and, when the public key is known, a signature of `message` by it.
pub(crate) fn check(
    message: &[u8],
    printed: &[u8],
    public: Option<&PublicKey>,
) -> Result<Vec<u8>, SignError> {
    let signature = decode(printed)?;
    signature::check_length(&signature, public)?;
    if let Some(public) = public {
        public.verify(message, &signature)?;
    }
    Ok(signature)
}

/// Why no JWT was signed, or a signer's setting was refused. Never quotes a key, and quotes
/// what a signer said only as `messages::foreign` cuts it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignError {
    #[error("cannot sign the App's JWT: the system's random source failed")]
    Random,
    #[error(
        "the signer gave {0}, not a signature: make it print the RS256 signature alone, raw or in base64"
    )]
    NotSignature(&'static str),
    #[error(
        "the signer's signature is {got} bytes long, and {expected}: check that the signer uses the App's RSA key with RS256 (RSASSA-PKCS1-v1_5 with SHA-256)"
    )]
    Length { got: usize, expected: String },
    #[error(
        "the signer's signature does not verify with the App's public key: check that the signer holds the App's key and signs with RSASSA-PKCS1-v1_5 and SHA-256 (not PSS, nor over a digest it was not given)"
    )]
    Mismatch,
    #[error("the signer's public key {0}")]
    PublicKey(&'static str),
    #[error("cannot run the signer command: {0}")]
    Setup(String),
    #[error("cannot run the signer command `{command}`: {cause}")]
    CannotRun { command: String, cause: String },
    #[error(
        "the signer command `{command}` gave no signature within {seconds}s: check that it reaches its KMS or HSM, and asks nothing on a terminal"
    )]
    Late { command: String, seconds: u64 },
    #[error(
        "the signer command `{command}` printed more than {kib} KiB, and a signature is under 1: make it print the signature alone"
    )]
    TooLong { command: String, kib: usize },
    #[error("the signer command `{command}` failed ({status}): {said}")]
    Failed {
        command: String,
        status: String,
        said: String,
    },
    /// AWS KMS refused, or could not be reached: its one line.
    #[error("{0}")]
    Aws(String),
}
