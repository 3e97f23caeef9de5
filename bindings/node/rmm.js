'use strict'
// The `rmm` package: the native addon (loaded by the generated index.js),
// grouped as the Python package is (`rmm.proxmox`, `rmm.channel`), plus
// error classes.
//
// Errors: every rejection or throw of the addon is an `Error` whose `name`
// is one of the classes below, with `code` (machine code, the same as the
// Python binding's `.code`) and `status` (HTTP status or null), and for some
// classes more (`path`/`privilege`, `upid`/`exitstatus`/`logTail`). The
// classes recognise those errors with `instanceof`, so
// `err instanceof rmm.NotFound` and `err instanceof rmm.RmmError` work.

const native = require('./index.js')

const ERROR_NAMES = [
  'AuthError',
  'PermissionDenied',
  'NotFound',
  'Conflict',
  'InvalidArgument',
  'PayloadTooLarge',
  'RateLimited',
  'Timeout',
  'TaskFailed',
  'ServerError',
  'TransportError',
]
const ALL_NAMES = new Set(['RmmError', ...ERROR_NAMES])

/** Base class of every rmm error. */
class RmmError extends Error {
  constructor(message, props) {
    super(message)
    Object.defineProperty(this, 'name', { value: new.target.name, configurable: true, writable: true })
    this.code = 'error'
    this.status = null
    Object.assign(this, props)
  }

  static [Symbol.hasInstance](value) {
    return value instanceof Error && ALL_NAMES.has(value.name) && typeof value.code === 'string'
  }
}

function errorClass(name) {
  const cls = {
    [name]: class extends RmmError {
      static [Symbol.hasInstance](value) {
        return value instanceof Error && value.name === name && typeof value.code === 'string'
      }
    },
  }[name]
  return cls
}

// one assignment each, so Node's ESM named-import detection sees them
exports.RmmError = RmmError
exports.AuthError = errorClass('AuthError')
exports.PermissionDenied = errorClass('PermissionDenied')
exports.NotFound = errorClass('NotFound')
exports.Conflict = errorClass('Conflict')
exports.InvalidArgument = errorClass('InvalidArgument')
exports.PayloadTooLarge = errorClass('PayloadTooLarge')
exports.RateLimited = errorClass('RateLimited')
exports.Timeout = errorClass('Timeout')
exports.TaskFailed = errorClass('TaskFailed')
exports.ServerError = errorClass('ServerError')
exports.TransportError = errorClass('TransportError')

exports.Client = native.Client
exports.ProxmoxClient = native.ProxmoxClient
exports.Upid = native.Upid
exports.latestFor = native.latestFor
exports.proxmox = Object.freeze({ Client: native.ProxmoxClient, Upid: native.Upid })
exports.channel = Object.freeze({ latestFor: native.latestFor })
