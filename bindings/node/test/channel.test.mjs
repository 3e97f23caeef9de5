// rmm.channel.latestFor over a real downloads directory.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'

import { rmm } from './helpers.mjs'

function downloads() {
  const dir = mkdtempSync(join(tmpdir(), 'rmm-node-dl-'))
  const build = (name, tag, sha = true) => {
    const data = `binary ${name}`
    writeFileSync(join(dir, name), data)
    if (sha) writeFileSync(join(dir, `${name}.sha256`), `${createHash('sha256').update(data).digest('hex')}  ${name}\n`)
    if (tag) writeFileSync(join(dir, `${name}.channel`), `${tag}\n`)
  }
  build('rmm-agent-linux-x86_64-0.6.9')
  build('rmm-agent-linux-x86_64-0.6.10', 'stable')
  build('rmm-agent-linux-x86_64-0.7.0-beta.1', 'beta')
  build('rmm-agent-linux-x86_64-0.8.0', undefined, false)
  return dir
}

test('stable gets the newest stable build by semver, beta the newest', () => {
  const dir = downloads()
  const stable = rmm.channel.latestFor(dir, 'linux', 'x86_64', 'stable')
  assert.equal(stable.fileName, 'rmm-agent-linux-x86_64-0.6.10')
  assert.equal(stable.sha256, createHash('sha256').update('binary rmm-agent-linux-x86_64-0.6.10').digest('hex'))
  assert.equal(rmm.channel.latestFor(dir, 'linux', 'x86_64').version, '0.6.10')
  assert.equal(rmm.channel.latestFor(dir, 'linux', 'x86_64', 'beta').version, '0.7.0-beta.1')
  assert.equal(rmm.channel.latestFor(dir, 'linux', 'x86_64', 'stable', '0.6.10'), null)
  assert.equal(rmm.channel.latestFor(dir, 'linux', 'aarch64'), null)
})

test('bad input throws typed errors', () => {
  const dir = downloads()
  assert.throws(() => rmm.channel.latestFor(dir, 'plan9', 'x86_64'), (e) => e instanceof rmm.InvalidArgument)
  assert.throws(() => rmm.channel.latestFor(dir, 'linux', 'x86_64', 'nightly'), (e) => e instanceof rmm.InvalidArgument)
  assert.throws(
    () => rmm.channel.latestFor(join(dir, 'missing'), 'linux', 'x86_64'),
    (e) => e instanceof rmm.RmmError && e.code === 'scan_failed',
  )
})
