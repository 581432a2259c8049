//! Observation operators of tidewatch: they watch the record stream without changing it.

pub mod classify;
