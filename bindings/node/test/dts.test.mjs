// The committed TypeScript declarations are what the napi CLI generates
// from the current Rust code, and typed code using the package compiles
// under `tsc --strict`.
//
// run-tests copies the committed index.d.ts / index.js aside (to
// RMM_COMMITTED_DIR) before `npm run build` regenerates them; without it
// the committed versions are read from git.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'

import { PACKAGE_DIR, REPO } from './helpers.mjs'

function committed(file) {
  if (process.env.RMM_COMMITTED_DIR) return readFileSync(join(process.env.RMM_COMMITTED_DIR, file), 'utf8')
  return execFileSync('git', ['show', `HEAD:bindings/node/${file}`], { cwd: REPO, encoding: 'utf8' })
}

for (const file of ['index.d.ts', 'index.js']) {
  test(`committed ${file} matches a fresh generation`, () => {
    const fresh = readFileSync(join(PACKAGE_DIR, file), 'utf8')
    assert.equal(
      committed(file),
      fresh,
      `bindings/node/${file} is stale: run \`npm run build\` in bindings/node and commit the result`,
    )
  })
}

test('typed usage compiles with tsc --strict', () => {
  const tsc = join(PACKAGE_DIR, 'node_modules', '.bin', 'tsc')
  try {
    execFileSync(tsc, ['--project', join(PACKAGE_DIR, 'test', 'tsconfig.json')], { encoding: 'utf8', stdio: 'pipe' })
  } catch (e) {
    assert.fail(`tsc failed:\n${e.stdout}${e.stderr}`)
  }
})
