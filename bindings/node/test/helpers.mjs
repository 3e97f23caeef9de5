// Test fixtures: a real rmm-server and rmm-agent on 127.0.0.1 and the
// schema-validating mock Proxmox VE, as child processes.
//
// Binaries come from the cargo target directory (`cargo build --workspace
// --bins`; CARGO_TARGET_DIR or `cargo metadata` says where), or from
// RMM_SERVER_BIN / RMM_AGENT_BIN / RMM_MOCK_PVE_BIN. A missing binary fails
// the tests; nothing is skipped.

import { spawn, execFileSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
export const rmm = require('../rmm.js')

export const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const REPO = resolve(PACKAGE_DIR, '..', '..')
export const ADMIN_EMAIL = 'admin@example.com'
export const ADMIN_PASSWORD = 'correct horse battery staple'

let targetDir
function cargoTargetDir() {
  if (process.env.CARGO_TARGET_DIR) return process.env.CARGO_TARGET_DIR
  if (!targetDir) {
    const out = execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: REPO, encoding: 'utf8' })
    targetDir = JSON.parse(out).target_directory
  }
  return targetDir
}

export function binary(envName, name) {
  const path = process.env[envName] || join(cargoTargetDir(), process.env.RMM_TEST_PROFILE || 'debug', name)
  if (!existsSync(path)) {
    throw new Error(`${path} does not exist: build it first with \`cargo build --workspace --bins\` (or set ${envName})`)
  }
  return path
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function stop(child) {
  return new Promise((res) => {
    if (child.exitCode !== null || child.signalCode !== null) return res()
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    child.once('exit', () => {
      clearTimeout(timer)
      res()
    })
    child.kill('SIGTERM')
  })
}

/** Starts rmm-server and an enrolled, online rmm-agent. */
export async function startStack() {
  const dir = mkdtempSync(join(tmpdir(), 'rmm-node-test-'))
  const serverLog = join(dir, 'server.log')
  const server = spawn(binary('RMM_SERVER_BIN', 'rmm-server'), ['serve', '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'server')], {
    env: { ...process.env, RMM_ADMIN_EMAIL: ADMIN_EMAIL, RMM_ADMIN_PASSWORD: ADMIN_PASSWORD, RMM_LOG: 'info,sqlx=warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const log = createWriteStream(serverLog)
  server.stderr.pipe(log)
  const url = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`rmm-server did not start; log in ${serverLog}`)), 60_000)
    const lines = createInterface({ input: server.stdout })
    lines.on('line', (line) => {
      log.write(line + '\n')
      const i = line.indexOf('listening on http://')
      if (i >= 0) {
        clearTimeout(timer)
        res(line.slice(i + 'listening on '.length).split(/\s/)[0].replace(/\/$/, ''))
      }
    })
    server.once('exit', (code) => rej(new Error(`rmm-server exited with ${code}; log in ${serverLog}`)))
  })

  const token = await new rmm.Client(url).login(ADMIN_EMAIL, ADMIN_PASSWORD)
  const client = new rmm.Client(url, token)
  const name = `node-${randomUUID().slice(0, 8)}`
  const bundle = await client.createEnrollment(name)
  const state = join(dir, 'agent')
  const agentBin = binary('RMM_AGENT_BIN', 'rmm-agent')
  execFileSync(agentBin, ['enroll', '--server', url, '--state-dir', state], {
    env: { ...process.env, RMM_ENROLL_TOKEN: bundle.token },
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 60_000,
  })
  const agentLog = join(dir, 'agent.log')
  const agentProc = spawn(agentBin, ['run', '--state-dir', state], {
    env: {
      ...process.env,
      RMM_AGENT_INITIAL_DELAY_MS: '0',
      RMM_AGENT_BACKOFF_BASE_MS: '100',
      RMM_AGENT_BACKOFF_CAP_MS: '800',
      RMM_AGENT_KILL_GRACE_MS: '300',
      RMM_AGENT_MACHINE_ID: `node-${name}`,
      RMM_LOG: 'info',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  agentProc.stderr.pipe(createWriteStream(agentLog))
  const deadline = Date.now() + 30_000
  for (;;) {
    const agents = await client.agents()
    if (agents.some((a) => a.id === bundle.agentId && a.online)) break
    if (Date.now() > deadline) {
      throw new Error(`agent not online; logs: ${agentLog}\n${readFileSync(serverLog, 'utf8')}`)
    }
    await sleep(50)
  }
  return {
    url,
    token,
    client,
    agentId: bundle.agentId,
    agentName: name,
    async stop() {
      await stop(agentProc)
      await stop(server)
      if (!process.env.RMM_KEEP_TEST_DIR) rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Starts the testkit's mock Proxmox VE; `control(op, args)` scripts it. */
export async function startMockPve() {
  const dir = mkdtempSync(join(tmpdir(), 'rmm-node-pve-'))
  const proc = spawn(binary('RMM_MOCK_PVE_BIN', 'rmm-testkit-mock-pve'), [], { stdio: ['pipe', 'pipe', 'pipe'] })
  proc.stderr.pipe(createWriteStream(join(dir, 'mock.log')))
  const lines = createInterface({ input: proc.stdout })
  const waiting = []
  lines.on('line', (line) => waiting.shift()?.(JSON.parse(line)))
  const next = () => new Promise((res) => waiting.push(res))
  const info = await next()
  const caFile = join(dir, 'ca.pem')
  writeFileSync(caFile, info.ca_pem)
  let queue = Promise.resolve()
  const control = (op, args = {}) => {
    const p = queue.then(async () => {
      const answer = next()
      proc.stdin.write(JSON.stringify({ ...args, op }) + '\n')
      const a = await answer
      if (!a.ok) throw new Error(`mock control ${op} failed: ${a.error}`)
      return a
    })
    queue = p.catch(() => {})
    return p
  }
  return {
    ...info,
    caFile,
    control,
    client(extra = {}) {
      return new rmm.ProxmoxClient({
        url: info.url,
        tokenId: info.token_id,
        tokenSecret: info.token_secret,
        fingerprint: info.fingerprint,
        node: info.node,
        ...extra,
      })
    },
    async stop() {
      const { violations } = await control('violations')
      proc.stdin.end()
      const code = await new Promise((res) => (proc.exitCode !== null ? res(proc.exitCode) : proc.once('exit', res)))
      rmSync(dir, { recursive: true, force: true })
      return { violations, code }
    },
  }
}

/** Asserts that `promise` rejects with an rmm error of class `name`; returns it. */
export async function rejectsWith(promise, name) {
  try {
    await promise
  } catch (e) {
    if (e.name !== name) throw new Error(`expected ${name}, got ${e.name}: ${e.message}`)
    if (!(e instanceof rmm[name]) || !(e instanceof rmm.RmmError)) throw new Error(`${e.name} is not an instance of rmm.${name}`)
    return e
  }
  throw new Error(`expected a ${name} rejection, but the promise resolved`)
}
