//! End to end against the real rmm-server.
