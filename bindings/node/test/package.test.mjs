// The package surface: ESM named imports, the proxmox/channel groups and
// the error classes' instanceof semantics.
import assert from 'node:assert/strict'
import { test } from 'node:test'

import rmm, {
  AuthError,
  Client,
  InvalidArgument,
  NotFound,
  RmmError,
  TaskFailed,
  channel,
  proxmox,
} from '../rmm.js'

test('named ESM imports and groups', () => {
  assert.equal(rmm.Client, Client)
  assert.equal(proxmox.Client, rmm.ProxmoxClient)
  assert.equal(proxmox.Upid, rmm.Upid)
  assert.equal(channel.latestFor, rmm.latestFor)
  assert.ok(Object.isFrozen(proxmox))
})

test('native errors are instances of their class and of RmmError only', () => {
  let err
  try {
    new Client('not a url')
  } catch (e) {
    err = e
  }
  assert.ok(err instanceof Error)
  assert.ok(err instanceof InvalidArgument)
  assert.ok(err instanceof RmmError)
  assert.ok(!(err instanceof NotFound))
  assert.equal(err.name, 'InvalidArgument')
  assert.equal(err.code, 'invalid_url')
  assert.equal(err.status, null)
  assert.ok(!(new Error('plain') instanceof RmmError))
  assert.ok(!(Object.assign(new Error('x'), { name: 'NotFound' }) instanceof NotFound), 'needs a code')
})

test('errors can be constructed for tests and wrappers', () => {
  const e = new TaskFailed('task failed', { code: 'task_failed', upid: 'UPID:x', exitstatus: 'boom', logTail: ['a'] })
  assert.ok(e instanceof TaskFailed && e instanceof RmmError && !(e instanceof AuthError))
  assert.deepEqual([e.name, e.code, e.status, e.upid, e.exitstatus, e.logTail], ['TaskFailed', 'task_failed', null, 'UPID:x', 'boom', ['a']])
  assert.equal(String(e), 'TaskFailed: task failed')
  const plain = new RmmError('generic')
  assert.equal(plain.code, 'error')
  assert.ok(plain instanceof RmmError)
})
