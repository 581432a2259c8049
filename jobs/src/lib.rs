//! The tidewatch jobs: the observer job, the visits generator and the demo, as a library
//! so benchmarks and integration tests drive the same code as the `tidewatch` binary.

pub mod cli;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod health;
pub mod mapping;
pub mod observer;
pub mod outputs;
pub mod profiles;
pub mod reconcile;
pub mod signals;
pub mod visits;
