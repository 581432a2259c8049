//! Observation operators of tidewatch: they watch the record stream without changing it.

pub mod classify;
pub mod custom;
pub mod lag;
pub mod parse;
pub mod quality;
pub mod reconcile;
pub mod stats;
pub mod value_rules;
pub mod alerts;
pub mod builtin;
pub mod observers;
pub mod profile;
pub mod protocol;
