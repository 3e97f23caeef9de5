//! Integration tests of rmm-proxmox against a schema-validating mock
//! Proxmox VE server over real HTTPS, mocked seams (mockall) and real child
//! processes.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
mod coverage;
mod errors;
mod fence;
mod leniency;
mod mutations;
mod privileged;
mod reads;
mod runner;
mod schema_validation;
mod selftest;
mod tasks;
mod tls;
