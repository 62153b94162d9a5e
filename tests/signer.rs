//! The App's JWT signed by a signer command past the first token's expiry: a PKCS#11 token
//! through `pkcs11-tool`, in setup's jobs and in the native entry, and AWS KMS through the AWS
//! CLI against moto, in setup's jobs; and each way a command fails, in one line that shows
//! nothing secret.

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use testkit::assert_success;
use testkit::ci::CiJob;
use testkit::fake_github::APP_PUBLIC_KEY;
use testkit::logs::text;
use testkit::runner::{LaterStep, View};
use testkit::scene::{Scene, assert_no_key_material};
use testkit::signers::{KmsKey, SoftHsm};

/// A job of `setup` whose JWTs `signer` signs (its command in `TOKEN_KEEPER_SIGNER_COMMAND`,
/// beside `env`, its public key in the file `public_key`): it clones, pushes after the first
/// token expired, runs the tools and revokes. The store it made is checked before the revoke.
fn push_past_expiry_through_setup(
    scene: &Scene,
    env: Vec<(String, String)>,
    command: &str,
    public_key: &[u8],
) {
    let job = CiJob::new(&[("CI_JOB_ID", "2525")]);
    let public = job.path("app.pub");
    fs::write(&public, public_key).unwrap();
    let kept = job.path("kept");
    let script = format!(
        r#"eval "$({setup})"
ls -A "$TOKEN_KEEPER_STATE" > '{kept}.list'
cp "$TOKEN_KEEPER_STATE/state.json" '{kept}.json'
{push}
token-keeper revoke"#,
        setup = CiJob::setup_with(
            scene,
            &format!("--signer-public-key-file '{public}' --owner Octo-Org --repositories app")
        ),
        push = CiJob::late_push(scene),
    );
    let mut env = env;
    env.push(("TOKEN_KEEPER_SIGNER_COMMAND".into(), command.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = job.shell(&script, &env);
    assert_success("the job", &out);
    assert!(scene.github.mints() >= 2, "the push re-minted");
    assert!(scene.github.world().live_tokens().is_empty(), "all revoked");
    let listed = fs::read_to_string(format!("{kept}.list")).unwrap();
    assert!(!listed.contains("key"), "no key file: {listed}");
    let state = fs::read_to_string(format!("{kept}.json")).unwrap();
    assert!(state.contains(r#""by": "command""#), "{state}");
    assert!(!state.contains("PRIVATE KEY"), "{state}");
    assert_no_jwt_shown(&scene.github.bearers(), &text(&out));
}

#[track_caller]
fn assert_no_jwt_shown(bearers: &[String], log: &str) {
    // The runner keeps what a mask line names out of the log.
    let shown: Vec<&str> = log
        .lines()
        .filter(|line| !line.starts_with("::add-mask::"))
        .collect();
    let shown = shown.join("\n");
    for jwt in bearers.iter().filter(|b| b.starts_with("eyJ")) {
        let signature = jwt.rsplit('.').next().unwrap();
        assert!(!shown.contains(signature), "a JWT's signature shown: {log}");
    }
}

#[tokio::test]
async fn a_pkcs11_token_signs_for_setup_past_the_first_tokens_expiry() {
    let hsm = SoftHsm::start();
    let scene = Scene::start(Duration::from_secs(3)).await;
    push_past_expiry_through_setup(
        &scene,
        hsm.env(),
        &SoftHsm::command(),
        APP_PUBLIC_KEY.as_bytes(),
    );
}

#[tokio::test]
async fn aws_kms_signs_through_the_aws_cli_for_setup_past_the_first_tokens_expiry() {
    let kms = KmsKey::start();
    let scene = Scene::start(Duration::from_secs(3)).await;
    // moto's own key is the App's here; its public key given as GetPublicKey's DER.
    scene.github.world().public_key = kms.pkcs1();
    push_past_expiry_through_setup(&scene, kms.env(), &kms.command(), &kms.spki);
}

#[tokio::test]
async fn a_pkcs11_token_signs_in_the_native_entry_past_the_first_tokens_expiry() {
    let hsm = SoftHsm::start();
    let mut s = Scene::start(Duration::from_secs(3)).await;
    s.job.extra_env.extend(hsm.env());
    let command = SoftHsm::command();
    let inputs = s.inputs(&[
        ("private-key", ""),
        ("signer-command", &command),
        ("signer-public-key", APP_PUBLIC_KEY),
    ]);
    let main = s.job.main(&inputs, View::Native);
    main.assert_ok();
    assert_no_key_material(&s.job.host_path(&main.state["dir"]));
    let mut step = LaterStep::after(&s.job, &main);
    step.env.extend(hsm.env());
    assert_success("git", &s.push_late(&step, Duration::from_millis(3500)));
    assert!(s.github.mints() >= 2, "the push re-minted");
    let post = s.job.post(&inputs, &main.state, View::Native);
    post.assert_ok();
    assert!(s.github.world().live_tokens().is_empty(), "{}", post.log());
    assert_no_jwt_shown(
        &s.github.bearers(),
        &format!("{}\n{}", main.log(), post.log()),
    );
}

#[tokio::test]
async fn the_container_entry_refuses_a_signer_command_naming_the_native_entry() {
    let s = Scene::start(Duration::from_secs(3600)).await;
    let ran = s.job.temp.join("signer-ran");
    let command = format!("touch '{}'", ran.display());
    let inputs = s.inputs(&[("private-key", ""), ("signer-command", &command)]);
    let main = s.job.main(&inputs, View::Host);
    let error = main.the_error();
    assert!(
        error.ends_with("input `signer-command`: the container entry's image has no shell and no CLI to run it: use the native entry (`uses: org/token-keeper/native@v1`) on a runner with the signer's CLI"),
        "{error}"
    );
    assert!(!ran.exists(), "the command never ran");
    assert_eq!(s.github.mints(), 0);
}

/// setup with `command` as the signer and the App's public key, when `checked`: what it said.
async fn setup_signed_by(command: &str, checked: bool) -> (Scene, Output) {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "2626")]);
    let public = job.path("app.pub");
    fs::write(&public, APP_PUBLIC_KEY).unwrap();
    let flags = match checked {
        true => format!("--signer-public-key-file '{public}' --owner Octo-Org"),
        false => "--owner Octo-Org".to_owned(),
    };
    let setup = CiJob::setup_with(&scene, &flags);
    let out = job.shell(&setup, &[("TOKEN_KEEPER_SIGNER_COMMAND", command)]);
    (scene, out)
}

#[tokio::test]
async fn each_way_a_signer_command_fails_is_one_line_that_shows_nothing_secret() {
    let credential = "ghs_0123456789abcdefghijklmnopqrstuvwxyzAB";
    let held = tempfile::tempdir().unwrap();
    let credential_file = held.path().join("credential");
    fs::write(&credential_file, credential).unwrap();
    let cases = [
        (
            // Read as it runs: setup refuses a command that holds a token.
            format!(
                "echo \"Permission denied to sign with the key app for $(cat '{}')\" >&2; exit 254",
                credential_file.display()
            ),
            "failed (exit status: 254): Permission denied to sign with the key app for […]",
        ),
        (
            "cat \"$TOKEN_KEEPER_SIGN_INPUT\" >&2; exit 1".to_owned(),
            "failed (exit status: 1): […]",
        ),
        (
            "echo 'no signature here'".to_owned(),
            "the signer gave text that is not base64, not a signature",
        ),
        (
            "head -c 1048576 /dev/zero | tr '\\0' A".to_owned(),
            "printed more than 64 KiB, and a signature is under 1",
        ),
        (
            "head -c 100 /dev/zero | base64".to_owned(),
            "the signer's signature is 100 bytes long, and the App's 2048-bit key signs 256 bytes",
        ),
        (
            "head -c 256 /dev/zero | base64".to_owned(),
            "the signer's signature does not verify with the App's public key",
        ),
    ];
    for (command, said) in cases {
        let (scene, out) = setup_signed_by(&command, true).await;
        assert!(!out.status.success(), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{command}: {stderr}");
        assert!(
            stderr.starts_with("token-keeper: ") && stderr.contains(said),
            "{command}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{command}: nothing to eval");
        assert!(
            !stderr.contains(credential) && !stderr.contains("eyJ"),
            "{stderr}"
        );
        assert!(scene.github.bearers().is_empty(), "{command}: nothing sent");
    }
}

#[tokio::test]
async fn a_signature_no_public_key_checks_is_githubs_to_refuse_and_the_command_is_named() {
    let (scene, out) = setup_signed_by("head -c 256 /dev/zero | base64", false).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("the App's JWT was refused")
            && stderr
                .contains("belongs to the App whose key `TOKEN_KEEPER_SIGNER_COMMAND` signs with"),
        "{stderr}"
    );
    assert_no_jwt_shown(&scene.github.bearers(), &stderr);
}

#[tokio::test]
async fn a_hanging_signer_command_is_ended_with_its_tree_at_the_limit() {
    let job_dir = tempfile::tempdir().unwrap();
    let pid_file = job_dir.path().join("pid");
    let command = format!("sleep 300 & echo $! > '{}'; wait", pid_file.display());
    let (scene, out) = setup_signed_by(&command, true).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gave no signature within 15s") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert!(out.stdout.is_empty() && !stderr.contains("eyJ"), "{stderr}");
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "the command's child {pid} was ended");
    assert!(scene.github.bearers().is_empty());
}

fn alive(pid: i32) -> bool {
    // A zombie is dead: only its entry is left for its parent to reap.
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

#[tokio::test]
async fn a_remint_whose_signer_fails_serves_the_cached_token_while_it_lives() {
    let hsm = SoftHsm::start();
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "2727")]);
    let broken = job.path("hsm-unplugged");
    let command = format!(
        "if [ -e '{broken}' ]; then echo 'the token is not present' >&2; exit 1; fi; {}",
        SoftHsm::command()
    );
    let mut env = hsm.env();
    env.push(("TOKEN_KEEPER_SIGNER_COMMAND".into(), command));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let noted = job.path("state");
    let setup = CiJob::setup_with(&scene, "--owner Octo-Org");
    let first = job.shell(
        &format!(
            "eval \"$({setup})\"\nprintf %s \"$TOKEN_KEEPER_STATE\" > '{noted}'\ntoken-keeper token"
        ),
        &env,
    );
    assert_success("setup", &first);
    let store = fs::read_to_string(&noted).unwrap();
    token_keeper::backdate_cached_token(Path::new(&store), 50 * 60, false).unwrap();
    fs::write(&broken, "").unwrap();
    let mut later = env.clone();
    later.push(("TOKEN_KEEPER_STATE", &store));
    let out = job.shell("token-keeper token", &later);
    assert_success("token", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&first.stdout),
        "the cached token"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("re-minting failed")
            && stderr.contains("the token is not present")
            && stderr.contains("serving the cached token"),
        "{stderr}"
    );
    assert_eq!(scene.github.mints(), 1);
}

#[tokio::test]
async fn a_key_kms_does_not_know_is_the_aws_clis_own_line() {
    let kms = KmsKey::start();
    let command = kms.command().replace(&kms.arn, "alias/gone");
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "2828")]);
    let mut env = kms.env();
    env.push(("TOKEN_KEEPER_SIGNER_COMMAND".into(), command));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = job.shell(&CiJob::setup_with(&scene, "--owner Octo-Org"), &env);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("when calling the Sign operation: Alias ")
            && stderr.contains("alias/gone is not found"),
        "{stderr}"
    );
    assert!(!stderr.contains(testkit::moto::SECRET), "{stderr}");
    assert!(scene.github.bearers().is_empty());
}
