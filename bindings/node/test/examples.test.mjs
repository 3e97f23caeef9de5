// examples/node/run.mjs works against a real server and agent, with `rmm`
// resolved to this package the way `npm install` links it.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { after, before, test } from 'node:test'

import { PACKAGE_DIR, REPO, startStack } from './helpers.mjs'

let stack
before(async () => {
  stack = await startStack()
})
after(async () => {
  await stack?.stop()
})

test('examples/node/run.mjs prints one line per online agent', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmm-node-example-'))
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(PACKAGE_DIR, join(dir, 'node_modules', 'rmm'), 'dir')
  copyFileSync(join(REPO, 'examples', 'node', 'run.mjs'), join(dir, 'run.mjs'))
  const { stdout } = await promisify(execFile)(process.execPath, [join(dir, 'run.mjs'), 'echo from-example'], {
    env: { ...process.env, RMM_URL: stack.url, RMM_TOKEN: stack.token },
  })
  const lines = stdout.trim().split('\n')
  assert.equal(lines.length, 1)
  assert.match(lines[0], /\tcompleted\t0\tfrom-example$/)
})
