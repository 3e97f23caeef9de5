//! rmm-server (under construction).
