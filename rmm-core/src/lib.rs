//! rmm-core: placeholder while the skeleton is being laid down.
