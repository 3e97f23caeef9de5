#!/usr/bin/env node
// Run one command on every online agent at once and print the results.
//
//   cd bindings/node && npm install && npm run build      # once
//   cd examples/node && npm install                       # links ../../bindings/node as `rmm`
//   RMM_PASSWORD=... node run.mjs 'uptime'
//
// RMM_URL (default http://127.0.0.1:3001), RMM_TOKEN or RMM_EMAIL
// (default admin@example.com) + RMM_PASSWORD. Exit status 0 when every
// command succeeded.
import rmm from 'rmm'

const command = process.argv[2]
if (!command) {
  console.error('usage: node run.mjs COMMAND')
  process.exit(2)
}
const url = process.env.RMM_URL ?? 'http://127.0.0.1:3001'

try {
  const client = new rmm.Client(url, process.env.RMM_TOKEN)
  if (!process.env.RMM_TOKEN) {
    await client.login(process.env.RMM_EMAIL ?? 'admin@example.com', process.env.RMM_PASSWORD ?? '')
  }
  const agents = (await client.agents()).filter((a) => a.online)
  if (agents.length === 0) {
    console.error('no agent is online')
    process.exit(1)
  }
  const results = await Promise.allSettled(agents.map((a) => client.run(a.id, command, { timeout: 60, waitTimeout: 120 })))
  let allOk = true
  results.forEach((r, i) => {
    const host = agents[i].hostname
    if (r.status === 'rejected') {
      allOk = false
      console.log(`${host}\terror:${r.reason.code}\t${r.reason.message}`)
      return
    }
    const res = r.value
    allOk &&= res.ok
    const out = (res.stdout.trim() || res.stderr.trim()).split('\n')[0] ?? ''
    console.log(`${host}\t${res.status}\t${res.exitCode ?? '-'}\t${out}`)
  })
  process.exitCode = allOk ? 0 : 1
} catch (e) {
  if (e instanceof rmm.AuthError) console.error(`login failed: ${e.message}`)
  else if (e instanceof rmm.TransportError) console.error(`cannot reach ${url}: ${e.message}`)
  else console.error(`${e.name} (${e.code ?? '-'}): ${e.message}`)
  process.exitCode = 1
}
