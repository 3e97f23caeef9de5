// rmm.proxmox against the schema-validating mock Proxmox VE (real HTTPS).
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, describe, test } from 'node:test'

import { rejectsWith, rmm, startMockPve } from './helpers.mjs'

const FAST = { pollInterval: 0.05 }

describe('rmm.proxmox.Client', () => {
  let pve
  before(async () => {
    pve = await startMockPve()
  })
  afterEach(async () => {
    const { violations } = await pve.control('violations')
    assert.deepEqual(violations, [], 'requests that violate the Proxmox API schema')
  })
  after(async () => {
    const { violations, code } = await pve.stop()
    assert.deepEqual(violations, [])
    assert.equal(code, 0)
  })

  test('typed reads', async () => {
    const c = pve.client()
    assert.equal(c.url, pve.url)
    assert.equal(c.node, 'pve1')
    assert.ok(c instanceof rmm.proxmox.Client)
    const v = await c.version()
    assert.deepEqual([v.version, v.release], ['9.1.1', '9.1'])
    const nodes = Object.fromEntries((await c.nodes()).map((n) => [n.node, n]))
    assert.equal(nodes.pve1.status, 'online')
    assert.equal(nodes.pve2.status, 'offline')
    const st = await c.nodeStatus()
    assert.deepEqual(st.loadavg, [0.12, 0.3, 0.25])
    assert.equal(st.cpus, 32)
    const cts = Object.fromEntries((await c.lxcList()).map((ct) => [ct.vmid, ct]))
    assert.equal(cts[100].template, true)
    assert.equal(cts[101].name, 'cust-a-web')
    assert.equal((await c.lxcStatus(101)).status, 'running')
    const cfg = await c.lxcConfig(101)
    assert.equal(cfg.hostname, 'cust-a-web')
    assert.deepEqual(cfg.tags, ['cust-a', 'web'])
    assert.match(cfg.net['0'], /^name=eth0,bridge=vmbr0/)
    assert.match(cfg.mp['0'], /mp=\/srv\/data/)
    assert.ok(cfg.digest)
    const storage = Object.fromEntries((await c.storage('pve1')).map((s) => [s.storage, s]))
    assert.equal(storage['local-lvm'].type, 'lvmthin')
    assert.equal(storage['local-lvm'].total, 500_000_000_000)
    assert.ok((await c.permissions('/vms/101')).includes('VM.Snapshot'))
    assert.deepEqual(
      await c.checkPrivileges([
        { path: '/vms/101', privilege: 'VM.Snapshot' },
        { path: '/vms/101', privilege: 'Sys.Console' },
      ]),
      [{ path: '/vms/101', privilege: 'Sys.Console' }],
    )
  })

  test('snapshot, config change, rollback, delete with waitTask', async () => {
    const c = pve.client()
    const upid = await c.snapshotLxc(101, 'pre-upgrade', { description: 'before' })
    const u = new rmm.proxmox.Upid(upid)
    assert.deepEqual([u.node, u.taskType, u.id, u.user], ['pve1', 'vzsnapshot', '101', pve.token_id])
    assert.equal(String(u), upid)
    const done = await c.waitTask(upid, FAST)
    assert.deepEqual([done.upid, done.exitstatus, done.warnings], [upid, 'OK', 0])
    assert.deepEqual((await pve.control('snapshot_names', { vmid: 101 })).names, ['pre-upgrade'])
    assert.deepEqual((await c.lxcSnapshots(101)).map((s) => s.name), ['pre-upgrade', 'current'])
    await c.setLxcConfig(101, { set: { cores: 4, onboot: true, description: 'changed' } })
    assert.equal((await pve.control('config_value', { vmid: 101, key: 'cores' })).value, '4')
    assert.equal((await pve.control('config_value', { vmid: 101, key: 'onboot' })).value, '1')
    await c.waitTask(await c.rollbackLxc(101, 'pre-upgrade', { start: true }), FAST)
    assert.equal((await pve.control('config_value', { vmid: 101, key: 'cores' })).value, '2')
    await c.waitTask(await c.deleteLxcSnapshot(101, 'pre-upgrade'), FAST)
    assert.deepEqual((await pve.control('snapshot_names', { vmid: 101 })).names, [])
  })

  test('stop, start, vzdump, restore', async () => {
    const c = pve.client()
    await pve.control('add_container', { vmid: 220, hostname: 'scratch', running: true })
    await c.waitTask(await c.stopLxc(220), FAST)
    assert.equal((await pve.control('is_running', { vmid: 220 })).running, false)
    await c.waitTask(await c.startLxc(220), FAST)
    await c.waitTask(await c.vzdump([220], { storage: 'local', mode: 'snapshot', compress: 'zstd' }), FAST)
    const upid = await c.restoreLxc(221, 'local:backup/vzdump-lxc-100-2025_01_01-00_00_00.tar.zst', {
      storage: 'local-lvm',
      hostname: 'cust-b-web',
    })
    await c.waitTask(upid, FAST)
    assert.equal((await c.lxcConfig(221)).hostname, 'cust-b-web')
  })

  test('PermissionDenied names path and privilege', async () => {
    await pve.control('add_container', { vmid: 230, hostname: 'locked', running: false })
    await pve.control('set_permissions', { path: '/vms/230', privileges: ['VM.Audit'] })
    const e = await rejectsWith(pve.client().snapshotLxc(230, 'nope'), 'PermissionDenied')
    assert.deepEqual([e.path, e.privilege, e.status, e.code], ['/vms/230', 'VM.Snapshot', 403, 'permission_denied'])
  })

  test('failed task rejects with TaskFailed; slow task with Timeout', async () => {
    const c = pve.client()
    await pve.control('add_container', { vmid: 240, hostname: 'failing', running: false })
    await pve.control('next_task', { exitstatus: "command 'lxc-start' failed: exit code 1", log_lines: 3 })
    const upid = await c.startLxc(240)
    const e = await rejectsWith(c.waitTask(upid, FAST), 'TaskFailed')
    assert.equal(e.upid, upid)
    assert.equal(e.exitstatus, "command 'lxc-start' failed: exit code 1")
    assert.match(e.logTail.at(-1), /^TASK ERROR/)
    await pve.control('add_container', { vmid: 241, hostname: 'slow', running: false })
    await pve.control('next_task', { running_polls: 1000 })
    const slow = await c.startLxc(241)
    const t = await rejectsWith(c.waitTask(slow, { timeout: 0.3, pollInterval: 0.05 }), 'Timeout')
    assert.equal(t.upid, slow)
    assert.equal(t.code, 'task_timeout')
  })

  test('NotFound, unreachable node, bad arguments', async () => {
    const c = pve.client()
    await rejectsWith(c.lxcConfig(999), 'NotFound')
    const e = await rejectsWith(c.lxcList('pve2'), 'ServerError')
    assert.equal(e.code, 'node_unreachable')
    await rejectsWith(c.snapshotLxc(101, 'bad name with spaces'), 'InvalidArgument')
    await rejectsWith(c.vzdump([101], { compress: 'rar' }), 'InvalidArgument')
    assert.throws(() => new rmm.Upid('not a upid'), (err) => err instanceof rmm.InvalidArgument)
    await rejectsWith(pve.client({ node: undefined }).lxcList(), 'InvalidArgument')
  })

  test('wrong secret is AuthError; TLS pin and CA file', async () => {
    const bad = pve.client({ tokenSecret: randomUUID() })
    assert.equal((await rejectsWith(bad.version(), 'AuthError')).status, 401)
    const wrong = Array(32).fill('AB').join(':')
    const e = await rejectsWith(pve.client({ fingerprint: wrong }).version(), 'TransportError')
    assert.equal(e.code, 'tls')
    const viaCa = new rmm.proxmox.Client({ url: pve.url, tokenId: pve.token_id, tokenSecret: pve.token_secret, caFile: pve.caFile })
    assert.equal((await viaCa.version()).release, '9.1')
    assert.throws(
      () => new rmm.proxmox.Client({ url: 'http://insecure.example', tokenId: pve.token_id, tokenSecret: pve.token_secret }),
      (err) => err instanceof rmm.InvalidArgument,
    )
  })

  test('fromConfig reads a config file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rmm-node-cfg-'))
    const path = join(dir, 'pve.json')
    writeFileSync(
      path,
      JSON.stringify({ url: pve.url, token_id: pve.token_id, token_secret: pve.token_secret, fingerprint: pve.fingerprint, node: 'pve1' }),
    )
    const c = rmm.proxmox.Client.fromConfig(path)
    assert.equal(c.node, 'pve1')
    assert.equal((await c.version()).version, '9.1.1')
    assert.throws(() => rmm.proxmox.Client.fromConfig(join(dir, 'missing.json')), (err) => err instanceof rmm.InvalidArgument)
  })
})
