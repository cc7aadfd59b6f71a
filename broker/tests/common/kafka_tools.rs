//! Running Kafka's command-line tools in the test's JVM (`client_kafka_tools*.rs`): each
//! tool's main class with its arguments, as `kafka-topics.sh` and friends would run it.
//! Included by path next to `clients.rs`, whose client process it drives.

#![allow(dead_code)] // each tool test uses its own part

use crate::clients::{java_available, java_proc, ClientProc, Output, COMMAND_TIMEOUT};

/// The JVM that runs Kafka's command-line tools (their main classes), when the Java programs
/// are built.
pub fn tools(test: &str) -> Option<ClientProc> {
    java_available(test).then(|| java_proc("kafka tools"))
}

/// Runs one Kafka tool (its main class) with `args`; fails the test unless it exits 0.
pub fn tool(c: &mut ClientProc, class: &str, args: &[&str]) -> Output {
    let mut all = vec!["tool", class];
    all.extend_from_slice(args);
    c.run(&all, COMMAND_TIMEOUT).ok()
}

/// A tool's stdout lines (logging goes to stderr), joined.
pub fn text(out: &Output) -> String {
    out.stdout.join("\n")
}
