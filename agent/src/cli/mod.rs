//! `coloctl` subcommands, one module per command group.

pub mod policy;
