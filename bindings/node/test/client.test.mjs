// rmm.Client against a real rmm-server and rmm-agent.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'

import { ADMIN_EMAIL, ADMIN_PASSWORD, rejectsWith, rmm, sleep, startStack } from './helpers.mjs'

describe('rmm.Client', () => {
  let stack
  let client
  let agentId
  before(async () => {
    stack = await startStack()
    client = stack.client
    agentId = stack.agentId
  })
  after(async () => {
    await stack?.stop()
  })

  test('login returns a token a new client can reuse', async () => {
    assert.equal(stack.token.split('.').length, 3)
    const c = new rmm.Client(stack.url + '/', stack.token)
    assert.equal(c.baseUrl, stack.url)
    assert.equal(c.token, stack.token)
    assert.ok(Array.isArray(await c.agents()))
    const fresh = new rmm.Client(stack.url)
    assert.equal(fresh.token, null)
    const t = await fresh.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert.equal(fresh.token, t)
  })

  test('wrong password is an AuthError with the server code', async () => {
    const e = await rejectsWith(new rmm.Client(stack.url).login('nobody@example.com', 'wrong password'), 'AuthError')
    assert.equal(e.status, 401)
    assert.equal(e.code, 'invalid_credentials')
  })

  test('bad token and no token are AuthErrors', async () => {
    const e = await rejectsWith(new rmm.Client(stack.url, 'not.a.jwt').agents(), 'AuthError')
    assert.equal(e.status, 401)
    const none = await rejectsWith(new rmm.Client(stack.url).agents(), 'AuthError')
    assert.equal(none.status, null)
  })

  test('unreachable server is a TransportError; bad URL throws InvalidArgument', async () => {
    const e = await rejectsWith(new rmm.Client('http://127.0.0.1:9', 'x').agents(), 'TransportError')
    assert.equal(e.code, 'transport')
    assert.match(e.message, /refused/i)
    assert.throws(() => new rmm.Client('ftp://example.com'), (err) => err instanceof rmm.InvalidArgument && err.code === 'invalid_url')
  })

  test('agents lists the running agent', async () => {
    const me = (await client.agents()).find((a) => a.id === agentId)
    assert.ok(me)
    assert.equal(me.online, true)
    assert.equal(me.status, 'online')
    assert.equal(me.name, stack.agentName)
    assert.equal(me.os, 'linux')
    assert.ok(me.lastSeen instanceof Date)
    assert.equal((await client.agent(agentId)).name, stack.agentName)
  })

  test('run waits for the result', async () => {
    const r = await client.run(agentId, 'echo hello; echo oops >&2')
    assert.equal(r.status, 'completed')
    assert.equal(r.exitCode, 0)
    assert.equal(r.ok, true)
    assert.equal(r.isFinal, true)
    assert.equal(r.stdout, 'hello\n')
    assert.equal(r.stderr, 'oops\n')
    assert.equal(r.agentId, agentId)
    assert.equal(r.createdBy, ADMIN_EMAIL)
    assert.ok(r.createdAt instanceof Date && r.completedAt instanceof Date)
    assert.ok(r.createdAt <= r.startedAt && r.startedAt <= r.completedAt)
    const py = await client.run(agentId, 'print(6 * 7)', { commandType: 'python' })
    assert.equal(py.stdout, '42\n')
  })

  test('non-zero exit is a failed result, not a rejection', async () => {
    const r = await client.run(agentId, 'echo partial; exit 3')
    assert.equal(r.status, 'failed')
    assert.equal(r.exitCode, 3)
    assert.equal(r.ok, false)
    assert.equal(r.stdout, 'partial\n')
  })

  test('command timeout kills the command', async () => {
    const t0 = Date.now()
    const r = await client.run(agentId, 'echo started; sleep 30', { timeout: 1, waitTimeout: 25 })
    assert.equal(r.status, 'timeout')
    assert.equal(r.timeout, 1)
    assert.equal(r.stdout, 'started\n')
    assert.ok(Date.now() - t0 < 20_000)
  })

  test('waitTimeout rejects with Timeout', async () => {
    const e = await rejectsWith(client.run(agentId, 'sleep 30', { timeout: 10, waitTimeout: 0.5 }), 'Timeout')
    assert.equal(e.code, 'timeout')
  })

  test('run without waiting, then wait', async () => {
    const pending = await client.run(agentId, 'sleep 0.3; echo late', { wait: false })
    assert.equal(pending.status, 'running')
    assert.equal(pending.isFinal, false)
    assert.equal(pending.exitCode, undefined)
    const done = await client.wait(pending.id, 20)
    assert.equal(done.status, 'completed')
    assert.equal((await client.command(pending.id)).stdout, 'late\n')
  })

  test('cancel a running command', async () => {
    const pending = await client.run(agentId, 'echo begun; sleep 60', { wait: false })
    const deadline = Date.now() + 20_000
    while ((await client.command(pending.id)).phase !== 'executing') {
      assert.ok(Date.now() < deadline, 'command never started')
      await sleep(50)
    }
    const after = await client.cancel(pending.id)
    assert.ok(after.cancelRequestedAt instanceof Date)
    const final = await client.wait(pending.id, 20)
    assert.equal(final.status, 'cancelled')
    const e = await rejectsWith(client.cancel(pending.id), 'Conflict')
    assert.equal(e.status, 409)
  })

  test('unknown agent and command are NotFound', async () => {
    const e = await rejectsWith(client.run(randomUUID(), 'true'), 'NotFound')
    assert.equal(e.status, 404)
    assert.equal(e.code, 'not_found')
    await rejectsWith(client.command(randomUUID()), 'NotFound')
  })

  test('invalid arguments', async () => {
    await rejectsWith(client.run(agentId, 'true', { commandType: 'fish' }), 'InvalidArgument')
    await rejectsWith(client.run(agentId, 'true', { context: 'root' }), 'InvalidArgument')
    await rejectsWith(client.run('not-a-uuid', 'true'), 'InvalidArgument')
    await rejectsWith(client.run(agentId, 'true', { timeout: 0 }), 'InvalidArgument')
    const e = await rejectsWith(client.run(agentId, '   '), 'InvalidArgument')
    assert.equal(e.status, 422)
  })

  test('enrollment bundles', async () => {
    const b = await client.createEnrollment(`node-bundle-${randomUUID().slice(0, 6)}`, { channel: 'beta' })
    assert.ok(b.token.length >= 32)
    assert.ok(b.command.startsWith('curl ') && b.command.includes(b.token))
    assert.ok(b.expiresAt > new Date())
    await rejectsWith(client.createEnrollment('Not A DNS Label'), 'InvalidArgument')
    await rejectsWith(client.createEnrollment(stack.agentName), 'Conflict')
  })

  test('agentCommands pages newest first', async () => {
    const ids = []
    for (let i = 0; i < 3; i++) ids.push((await client.run(agentId, `echo page ${i}`)).id)
    const page = await client.agentCommands(agentId, { limit: 2 })
    assert.deepEqual(page.map((c) => c.id), [ids[2], ids[1]])
    const older = await client.agentCommands(agentId, { limit: 1, before: page[1].id })
    assert.deepEqual(older.map((c) => c.id), [ids[0]])
  })

  test('fifty commands in flight with Promise.all', async () => {
    const t0 = Date.now()
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => client.run(agentId, `sleep 0.2; echo ${i}`, { waitTimeout: 120 })),
    )
    const elapsed = Date.now() - t0
    assert.deepEqual(results.map((r) => r.stdout), Array.from({ length: 50 }, (_, i) => `${i}\n`))
    assert.ok(results.every((r) => r.status === 'completed' && r.exitCode === 0))
    assert.equal(new Set(results.map((r) => r.id)).size, 50)
    assert.ok(elapsed < 9000, `took ${elapsed} ms`)
  })
})
