//! `tidewatch`: copies a Kafka topic to another and observes the stream on the way (see
//! [`tidewatch_jobs::cli`] for the commands and their delivery semantics).

fn main() -> std::process::ExitCode {
    tidewatch_jobs::cli::Tidewatch::new().main()
}
