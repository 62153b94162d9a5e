//! A signature as a signer prints it, decoded, and its length checked.
//!
//! Tools print a signature raw (`pkcs11-tool`), in standard base64 (AWS, Azure's CLI), in
//! base64url (REST answers), or behind Vault's `vault:vN:` prefix, often with a line break. Text
//! of base64's characters is read as base64: raw signature bytes are all of them by chance about
//! never. Anything else is taken raw, untrimmed, as a raw signature's last byte may be a blank.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::{PublicKey, SignError};

/// The lengths of RS256 signatures by the RSA keys GitHub takes: 2048, 3072 and 4096 bits.
const LENGTHS: [usize; 3] = [256, 384, 512];

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const BASE64URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// The signature's bytes, from what a signer printed.
pub(crate) fn decode(printed: &[u8]) -> Result<Vec<u8>, SignError> {
    let text = std::str::from_utf8(printed).ok().map(str::trim);
    if text == Some("") || printed.is_empty() {
        return Err(SignError::NotSignature("nothing"));
    }
    if let Some(text) = text {
        let text = without_vault_prefix(text);
        // Line breaks where a tool wraps its base64; a blank inside is no base64's.
        let compact: String = text.lines().map(str::trim_end).collect();
        if compact
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'='))
        {
            let engine = if compact.contains(['-', '_']) {
                &BASE64URL
            } else {
                &BASE64
            };
            return engine
                .decode(&compact)
                .map_err(|_| SignError::NotSignature("text that is not valid base64"));
        }
        // Words, JSON, an error message on stdout: text, but not a signature.
        if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
            return Err(SignError::NotSignature("text that is not base64"));
        }
    }
    Ok(printed.to_vec())
}

/// Vault transit's signatures start `vault:v<key version>:`.
fn without_vault_prefix(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("vault:v") else {
        return text;
    };
    match rest.split_once(':') {
        Some((version, signature))
            if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) =>
        {
            signature
        }
        _ => text,
    }
}

/// A signature is as long as the key's modulus: that one length when the key is known.
pub(crate) fn check_length(signature: &[u8], public: Option<&PublicKey>) -> Result<(), SignError> {
    let got = signature.len();
    let expected = match public {
        Some(public) if got == public.modulus_len() => return Ok(()),
        Some(public) => format!(
            "the App's {}-bit key signs {} bytes",
            public.modulus_len() * 8,
            public.modulus_len()
        ),
        None if LENGTHS.contains(&got) => return Ok(()),
        None => {
            "an RS256 signature is 256, 384 or 512 bytes (an RSA key of 2048, 3072 or 4096 bits)"
                .to_owned()
        }
    };
    Err(SignError::Length { got, expected })
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    use super::*;

    /// Bytes of a signature's length, with what text trimming or base64 detection could trip on:
    /// a blank first and last, and every byte value.
    fn raw() -> Vec<u8> {
        let mut raw: Vec<u8> = (0..=255).collect();
        raw.swap(0, 32);
        raw.swap(255, 10);
        raw
    }

    #[test]
    fn every_form_a_tool_prints_decodes_to_the_same_bytes() {
        let raw = raw();
        let forms = [
            raw.clone(),
            STANDARD.encode(&raw).into_bytes(),
            format!("{}\n", STANDARD.encode(&raw)).into_bytes(),
            STANDARD
                .encode(&raw)
                .trim_end_matches('=')
                .as_bytes()
                .to_vec(),
            format!("  {}\r\n", URL_SAFE_NO_PAD.encode(&raw)).into_bytes(),
            format!("vault:v12:{}\n", STANDARD.encode(&raw)).into_bytes(),
            // Wrapped as `base64` wraps it.
            STANDARD
                .encode(&raw)
                .as_bytes()
                .chunks(76)
                .flat_map(|line| [line, b"\n"].concat())
                .collect(),
        ];
        for form in forms {
            assert_eq!(
                decode(&form).unwrap(),
                raw,
                "{:?}",
                String::from_utf8_lossy(&form)
            );
        }
    }

    #[test]
    fn what_is_no_signature_is_named() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "nothing"),
            (b" \n", "nothing"),
            (b"Error: no such key\n", "text that is not base64"),
            (br#"{"signature": "abc"}"#, "text that is not base64"),
            (b"vault:vx:abcd", "text that is not base64"),
            (b"abcde", "text that is not valid base64"),
        ];
        for (printed, what) in cases {
            assert_eq!(decode(printed), Err(SignError::NotSignature(what)));
        }
    }

    #[test]
    fn a_signature_is_as_long_as_the_key() {
        let public =
            PublicKey::parse(include_bytes!("../../../tests/fixtures/app-key.pub.pem")).unwrap();
        assert_eq!(check_length(&[0; 256], Some(&public)), Ok(()));
        let short = check_length(&[0; 255], Some(&public)).unwrap_err();
        assert_eq!(
            short.to_string(),
            "the signer's signature is 255 bytes long, and the App's 2048-bit key signs 256 bytes: check that the signer uses the App's RSA key with RS256 (RSASSA-PKCS1-v1_5 with SHA-256)"
        );
        assert!(check_length(&[0; 512], Some(&public)).is_err());
        for len in LENGTHS {
            assert_eq!(check_length(&vec![0; len], None), Ok(()));
        }
        let odd = check_length(&[0; 64], None).unwrap_err().to_string();
        assert!(
            odd.contains("64 bytes long, and an RS256 signature is 256, 384 or 512"),
            "{odd}"
        );
    }
}
