//! moto's server mode (PyPI `moto[server]`): AWS's KMS and STS on loopback, each server on a
//! free port of its own, its process group killed when dropped, also when a test fails.
//!
//! Keys are made with boto3 (which moto brings), as moto makes its own key material: a test
//! verifies what KMS signed with the public key moto gives, never with a fixture.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A role to assume with a web identity: moto's STS assumes any.
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/keeper";

/// The keys moto takes when it checks no signatures.
pub const ACCESS_KEY_ID: &str = "AKIDMOTOTESTING0001";
pub const SECRET: &str = "moto-testing-secret-access-key-00000000";

pub struct Moto {
    child: Child,
    port: u16,
    /// Its stderr, where it logs a line for each request it serves.
    log: tempfile::NamedTempFile,
}

/// A user moto's IAM knows, with keys, allowed everything (for a server that checks
/// signatures).
pub struct User {
    pub access_key_id: String,
    pub secret: String,
}

impl Moto {
    /// A server that checks no signatures (moto's default).
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// A server that checks every signature after its first `free` actions, which `setup` may
    /// spend making a user and keys.
    pub fn checking_after(free: u32) -> Self {
        Self::spawn(Some(free))
    }

    fn spawn(free_actions: Option<u32>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let mut command = Command::new("moto_server");
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("the log file"))
            .process_group(0);
        if let Some(free) = free_actions {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", free.to_string());
        }
        let child = command.spawn().expect(
            "moto_server runs: install it with `pip install 'moto[server]'` (scripts/test does)",
        );
        let moto = Self { child, port, log };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on {port} within 30s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// How many requests it has served: its log's request lines (`"POST / HTTP/1.1" 200`).
    pub fn requests(&self) -> usize {
        std::fs::read_to_string(self.log.path())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(" HTTP/1.1\" "))
            .count()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment of a process that reaches this server with the static test keys.
    pub fn env(&self, region: &str) -> Vec<(String, String)> {
        let mut env = self.env_without_credentials(region);
        env.push(("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()));
        env.push(("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()));
        env
    }

    /// The environment of a process that reaches this server with no static keys and no
    /// metadata service: its credentials are the caller's to add.
    pub fn env_without_credentials(&self, region: &str) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.url()),
            ("AWS_REGION".into(), region.into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    /// A new key of `spec` (`RSA_2048`, `ECC_NIST_P256`) and `usage` in `region`: its ARN.
    pub fn create_key(&self, region: &str, spec: &str, usage: &str) -> String {
        self.boto(
            region,
            &format!(
                "print(client('kms').create_key(KeySpec='{spec}', KeyUsage='{usage}')['KeyMetadata']['Arn'])"
            ),
        )
    }

    /// `alias/NAME` made for the key `arn`.
    pub fn create_alias(&self, region: &str, name: &str, arn: &str) -> String {
        self.boto(
            region,
            &format!(
                "client('kms').create_alias(AliasName='alias/{name}', TargetKeyId='{arn}')\nprint('alias/{name}')"
            ),
        )
    }

    /// The public key of the key `arn`, DER SubjectPublicKeyInfo, as moto gives it.
    pub fn public_key(&self, region: &str, arn: &str) -> Vec<u8> {
        let printed = self.boto(
            region,
            &format!(
                "import base64\nprint(base64.b64encode(client('kms').get_public_key(KeyId='{arn}')['PublicKey']).decode())"
            ),
        );
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, printed)
            .expect("base64 from boto3")
    }

    /// The environment of a process that reaches this server with no static keys: a web
    /// identity for `AWS_ROLE_ARN`, from the job's OIDC token or a token file the caller adds.
    pub fn web_identity_env(&self, region: &str) -> Vec<(String, String)> {
        let mut env = self.env_without_credentials(region);
        env.push(("AWS_ROLE_ARN".into(), ROLE_ARN.into()));
        env
    }

    /// A user allowed everything, with an access key: three actions.
    pub fn create_user(&self) -> User {
        let printed = self.boto(
            "us-east-1",
            "iam = client('iam')\n\
             iam.create_user(UserName='keeper')\n\
             iam.put_user_policy(UserName='keeper', PolicyName='all', PolicyDocument='{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}]}')\n\
             key = iam.create_access_key(UserName='keeper')['AccessKey']\n\
             print(key['AccessKeyId'], key['SecretAccessKey'])",
        );
        let (id, secret) = printed.split_once(' ').expect("a key and its secret");
        User {
            access_key_id: id.into(),
            secret: secret.into(),
        }
    }

    /// What a boto3 script printed, its `client(service)` bound to this server and `region`.
    fn boto(&self, region: &str, script: &str) -> String {
        let prelude = format!(
            "import boto3\n\
             def client(service):\n    return boto3.client(service, endpoint_url='{}', region_name='{region}', aws_access_key_id='{ACCESS_KEY_ID}', aws_secret_access_key='{SECRET}')\n",
            self.url()
        );
        let out = Command::new(python_beside_moto())
            .arg("-c")
            .arg(prelude + script)
            .env_remove("AWS_PROFILE")
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "boto3 against moto failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

/// The RSAPublicKey (PKCS#1) inside a DER SubjectPublicKeyInfo: what ring verifies with.
pub fn pkcs1_of(spki: &[u8]) -> Vec<u8> {
    fn element(der: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = der[0];
        let (len, start) = match der[1] {
            n if n < 0x80 => (n as usize, 2),
            n => {
                let bytes = (n & 0x7f) as usize;
                let len = der[2..2 + bytes]
                    .iter()
                    .fold(0usize, |acc, b| acc << 8 | *b as usize);
                (len, 2 + bytes)
            }
        };
        (tag, &der[start..start + len], &der[start + len..])
    }
    let (tag, info, _) = element(spki);
    assert_eq!(tag, 0x30, "a SEQUENCE");
    let (_, _, rest) = element(info);
    let (tag, bits, _) = element(rest);
    assert_eq!(tag, 0x03, "a BIT STRING");
    assert_eq!(bits[0], 0, "no unused bits");
    bits[1..].to_vec()
}

/// The python that runs `moto_server` (a venv's, pyenv's), which has boto3; else `python3`.
fn python_beside_moto() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("moto_server").is_file())
        .map(|dir| dir.join("python3"))
        .filter(|python| python.is_file())
        .unwrap_or_else(|| "python3".into())
}

impl Drop for Moto {
    fn drop(&mut self) {
        // SAFETY: no memory preconditions; the group is the server's own (`process_group(0)`).
        unsafe {
            libc::killpg(self.child.id() as libc::pid_t, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
