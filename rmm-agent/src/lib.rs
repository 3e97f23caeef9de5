//! rmm-agent (under construction).
