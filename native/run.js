'use strict';
// The native entry: runs the release's static binary for this machine in place, on the runner
// host or in the job's container, as the action's main or post step. The release commit adds the
// binaries to bin/ with their SHA-256 sums (bin/SHA256SUMS, as `sha256sum` writes them); nothing
// is downloaded at job time, and a binary whose sum is not the pinned one never runs.

const { spawnSync } = require('node:child_process');
const { createHash } = require('node:crypto');
const { readFileSync } = require('node:fs');
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

/** The path of this machine's binary in `dir`, once its SHA-256 is the pinned one. */
function verifiedBinary(dir, platform, arch) {
  const name = binaryFor(platform, arch);
  const bin = path.join(dir, 'bin');
  let sums;
  try {
    sums = readFileSync(path.join(bin, 'SHA256SUMS'), 'utf8');
  } catch {
    throw new Error(
      'this copy of the native entry has no binaries (no bin/SHA256SUMS): use a release, ' +
        '`uses: org/token-keeper/native@v1`, not a branch',
    );
  }
  const pinned = pinnedSum(sums, name);
  if (!pinned) throw new Error(`bin/SHA256SUMS pins no ${name}: reinstall the action from a release`);
  const file = path.join(bin, name);
  const actual = createHash('sha256').update(readFileSync(file)).digest('hex');
  if (actual !== pinned) {
    throw new Error(
      `${file} is not the binary this release pinned (SHA-256 ${actual}, not ${pinned}), ` +
        'so nothing was run: the action folder was changed after download; re-run the job',
    );
  }
  return file;
}

/** One `::error::` line, escaped as the runner reads workflow commands. */
function fail(message) {
  const data = message.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
  process.stdout.write(`::error title=token-keeper::${data}\n`);
  process.exitCode = 1;
}

/** Run the step `stage` (`main` or `post`) with the runner's environment and stdio. */
function run(stage) {
  let binary;
  try {
    binary = verifiedBinary(__dirname, process.platform, process.arch);
  } catch (err) {
    fail(err.message);
    return;
  }
  const child = spawnSync(binary, ['step', stage], { stdio: 'inherit' });
  if (child.error) {
    fail(`cannot run ${binary}: ${child.error.message}`);
  } else {
    // A binary killed by a signal has no status: the step failed all the same.
    process.exitCode = child.status ?? 1;
  }
}

module.exports = { binaryFor, pinnedSum, verifiedBinary, run };
