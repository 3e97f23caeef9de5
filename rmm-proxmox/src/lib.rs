//! rmm-proxmox (under construction).
