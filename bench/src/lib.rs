//! colo's QoS benchmarks: an open-loop HTTP load generator ([`loadgen`]), statistics with
//! bootstrap intervals ([`stats`]), and the headline and reaction benchmarks driven by the
//! `colo-bench` binary.

pub mod loadgen;
