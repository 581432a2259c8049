//! Observation operators of tidewatch: they watch the record stream without changing it.

pub mod classify;
pub mod lag;
pub mod quality;
pub mod stats;
pub mod alerts;
pub mod observers;
