// Declarations of rmm.js; the addon's own declarations are the generated
// index.d.ts.
import { ProxmoxClient, Upid, latestFor } from './index'

export * from './index'

/** Proxmox VE: `new rmm.proxmox.Client({ url, tokenId, tokenSecret, fingerprint, node })`. */
export declare const proxmox: {
  readonly Client: typeof ProxmoxClient
  readonly Upid: typeof Upid
}
export declare namespace proxmox {
  type Client = ProxmoxClient
  type Upid = import('./index').Upid
}

/** Release channels: `rmm.channel.latestFor(dir, os, arch, channel)`. */
export declare const channel: {
  readonly latestFor: typeof latestFor
}

/** Properties an rmm error may carry. */
export interface RmmErrorProps {
  code?: string
  status?: number | null
  path?: string | null
  privilege?: string | null
  upid?: string | null
  exitstatus?: string | null
  logTail?: string[]
}

/**
 * Base class of every rmm error. `code` is a stable machine code (the
 * server's `error` field for API errors, else a fixed word such as
 * `transport`, `timeout`, `task_failed`); `status` is the HTTP status or
 * `null`.
 */
export declare class RmmError extends Error {
  constructor(message?: string, props?: RmmErrorProps)
  readonly code: string
  readonly status: number | null
}
/** No, wrong or expired credentials (HTTP 401), or no login yet. */
export declare class AuthError extends RmmError {}
/** Not allowed (HTTP 403); for Proxmox, `path` and `privilege` name what the token lacks. */
export declare class PermissionDenied extends RmmError {
  readonly path: string | null
  readonly privilege: string | null
}
/** No such agent, command, container, snapshot or task (HTTP 404). */
export declare class NotFound extends RmmError {}
/** Conflicts with the current state (HTTP 409). */
export declare class Conflict extends RmmError {}
/** A malformed or unusable argument (rejected locally or with HTTP 400/422). */
export declare class InvalidArgument extends RmmError {}
/** Request body over the server's limit (HTTP 413). */
export declare class PayloadTooLarge extends RmmError {}
/** Too many requests (HTTP 429). */
export declare class RateLimited extends RmmError {}
/** A wait gave up; the command or task may still run. `upid` for Proxmox tasks. */
export declare class Timeout extends RmmError {
  readonly upid?: string | null
}
/** A Proxmox task ended with an exit status other than `OK` / `WARNINGS: N`. */
export declare class TaskFailed extends RmmError {
  readonly upid: string
  readonly exitstatus: string
  readonly logTail: string[]
}
/** The server failed (HTTP 5xx) or answered something unexpected. */
export declare class ServerError extends RmmError {}
/** The server could not be reached (connection refused, TLS, DNS). */
export declare class TransportError extends RmmError {}
