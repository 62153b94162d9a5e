'use strict';
// The native entry: runs the release's static binary for this machine, on the runner host or in
// the job's container, as the action's main or post step. The release commit adds the binaries
// to bin/ with their SHA-256 sums (bin/SHA256SUMS, as `sha256sum` writes them); nothing is
// downloaded at job time. The binary is read once, and what runs is a private copy of exactly
// the bytes whose sum is the pinned one: a file changed after the check never runs.

const { spawn } = require('node:child_process');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

// The binary for each platform and architecture, as node names them.
const BINARIES = {
  'linux x64': 'token-keeper-linux-x86_64',
  'linux arm64': 'token-keeper-linux-aarch64',
  'darwin x64': 'token-keeper-macos-x86_64',
  'darwin arm64': 'token-keeper-macos-aarch64',
  'win32 x64': 'token-keeper-windows-x86_64.exe',
  'win32 arm64': 'token-keeper-windows-aarch64.exe',
};

/** The binary's file name for `platform` and `arch`. */
function binaryFor(platform, arch) {
  const name = BINARIES[`${platform} ${arch}`];
  if (!name) {
    const known = Object.keys(BINARIES).join(', ');
    throw new Error(
      `no token-keeper binary for ${platform} ${arch} (there are for ${known}): ` +
        'on other Linux machines with docker use the container entry, `uses: org/token-keeper@v1`',
    );
  }
  return name;
}

/** The sum `sums` (a SHA256SUMS file) pins for `name`, if any. */
function pinnedSum(sums, name) {
  for (const line of sums.split(/\r?\n/)) {
    const entry = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (entry && entry[2] === name) return entry[1];
  }
  return undefined;
}

/** This machine's binary in `dir`, read once: its name, and its bytes, whose SHA-256 is pinned. */
function verifiedBinary(dir, platform, arch) {
  const name = binaryFor(platform, arch);
  const bin = path.join(dir, 'bin');
  let sums;
  try {
    sums = fs.readFileSync(path.join(bin, 'SHA256SUMS'), 'utf8');
  } catch {
    throw new Error(
      'this copy of the native entry has no binaries (no bin/SHA256SUMS): use a release, ' +
        '`uses: org/token-keeper/native@v1`, not a branch',
    );
  }
  const pinned = pinnedSum(sums, name);
  if (!pinned) throw new Error(`bin/SHA256SUMS pins no ${name}: reinstall the action from a release`);
  const file = path.join(bin, name);
  const bytes = fs.readFileSync(file);
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== pinned) {
    throw new Error(
      `${file} is not the binary this release pinned (SHA-256 ${actual}, not ${pinned}), ` +
        'so nothing was run: the action folder was changed after download; re-run the job',
    );
  }
  return { name, bytes };
}

/** One `::error::` line, escaped as the runner reads workflow commands. */
function fail(message) {
  const data = message.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
  process.stdout.write(`::error title=token-keeper::${data}\n`);
  process.exitCode = 1;
}

/** What a main step that ran no binary saves for its post step (`STATE_ran-nothing` there). */
const RAN_NOTHING = 'ran-nothing';

/** The step `stage` ran no binary: its one error; a main step tells its post step so. */
function ranNothing(stage, message) {
  fail(message);
  try {
    const state = process.env.GITHUB_STATE;
    if (stage === 'main') fs.appendFileSync(state, `${RAN_NOTHING}=true${os.EOL}`);
  } catch {
    // Without the state, the post step says the same error once more.
  }
}

/**
 * Run `file` with the runner's stdio to its end. The signals a cancelled job sends go on to it,
 * and we outlive it; on Windows its console gives it Ctrl+C as it gives us.
 */
function runToEnd(file, args) {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: 'inherit' });
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
      process.on(signal, () => process.platform === 'win32' || child.kill(signal));
    }
    // An error with no pid: it never started; after any other, its end still comes.
    child.on('error', (error) => child.pid === undefined && resolve({ error }));
    child.on('close', (status, signal) => resolve({ status, signal }));
  });
}

/** Run the step `stage` (`main` or `post`) with the runner's environment and stdio. */
async function run(stage) {
  if (stage === 'post' && process.env[`STATE_${RAN_NOTHING}`]) {
    process.stderr.write('token-keeper: nothing to clean up: the main step ran nothing\n');
    return;
  }
  let binary;
  let dir;
  let child;
  try {
    binary = verifiedBinary(__dirname, process.platform, process.arch);
  } catch (err) {
    ranNothing(stage, err.message);
    return;
  }
  try {
    dir = fs.mkdtempSync(path.join(process.env.RUNNER_TEMP || os.tmpdir(), 'token-keeper-run-'));
    const copy = path.join(dir, binary.name);
    fs.writeFileSync(copy, binary.bytes, { flag: 'wx', mode: 0o700 });
    child = await runToEnd(copy, ['step', stage]);
  } catch (error) {
    child = { error };
  }
  try {
    if (dir) fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch (err) {
    process.stderr.write(`token-keeper: warning: cannot remove ${dir}: ${err.message}\n`);
  }
  if (child.error) {
    ranNothing(
      stage,
      `cannot run a private copy of ${binary.name}: ${child.error.message}: ` +
        'the step needs a temp folder where it can write and run files ' +
        "(`RUNNER_TEMP`, else the system's)",
    );
  } else {
    if (child.signal) {
      process.stderr.write(`token-keeper: ${binary.name} was ended by ${child.signal}\n`);
    }
    // A binary killed by a signal has no status: the step failed all the same.
    process.exitCode = child.status ?? 1;
  }
}

module.exports = { binaryFor, pinnedSum, verifiedBinary, run };
