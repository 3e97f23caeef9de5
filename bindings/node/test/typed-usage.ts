// Compiled (never run) by dts.test.mjs with tsc --strict: typical code
// against the public declarations must type-check without casts.
import rmm = require('../rmm.js')

export async function fleet(url: string, password: string): Promise<Array<[string, number | undefined]>> {
  const client = new rmm.Client(url)
  const token: string = await client.login('admin@example.com', password)
  const again = new rmm.Client(url, token)
  const rows: Array<[string, number | undefined]> = []
  for (const agent of await again.agents()) {
    if (!agent.online) continue
    const r: rmm.CommandResult = await again.run(agent.id, 'uptime', { timeout: 30, waitTimeout: 90 })
    rows.push([agent.hostname, r.exitCode])
  }
  const bundle: rmm.EnrollmentBundle = await client.createEnrollment('web-01', { channel: 'beta' })
  const when: Date = bundle.expiresAt
  void when
  return rows
}

export function describeError(e: unknown): string {
  if (e instanceof rmm.PermissionDenied) return `${e.path} ${e.privilege}`
  if (e instanceof rmm.TaskFailed) return `${e.upid} ${e.exitstatus} ${e.logTail.join('\n')}`
  if (e instanceof rmm.RmmError) return `${e.code} ${e.status ?? '-'}`
  return String(e)
}

export async function pve(secret: string): Promise<number> {
  const c: rmm.proxmox.Client = new rmm.proxmox.Client({ url: 'https://pve1:8006', tokenId: 'rmm@pve!t', tokenSecret: secret, fingerprint: 'AA:BB', node: 'pve1' })
  const upid: string = await c.snapshotLxc(101, 'pre')
  const outcome: rmm.TaskOutcome = await c.waitTask(upid, { timeout: 60 })
  const cfg: rmm.LxcConfig = await c.lxcConfig(101)
  await c.setLxcConfig(101, { set: { cores: 2, onboot: true }, digest: cfg.digest })
  const parsed = new rmm.proxmox.Upid(upid)
  return outcome.warnings + Object.keys(cfg.net).length + parsed.pid
}

export function release(dir: string): string | null {
  const r: rmm.Release | null = rmm.channel.latestFor(dir, 'linux', 'x86_64', 'stable')
  return r ? r.version : null
}
