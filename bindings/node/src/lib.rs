//! Node.js bindings of rmm.
