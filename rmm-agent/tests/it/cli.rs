//! The command line: exit codes and messages.
