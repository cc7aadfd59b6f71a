//! kcat (Debian's package, librdkafka 2.x inside) beyond `second_client.rs`'s plain
//! produce and consume: producing with every codec (`-z`), with a header on every record
//! (`-H`), and consuming in a balanced consumer group (`-G`) that commits, so a second run
//! resumes after what the first read. What kcat wrote is read back with rdkafka and the raw
//! protocol client; what it committed is read with OffsetFetch.
//!
//! Without kcat the tests fail under CI and otherwise pass with a loud notice.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use clients::CODECS;
use common::groups::{committed_offsets, group_options, produce_spread};
use common::{batch_codecs, read_all, run_bounded, tool_available, Broker};

fn kcat(test: &str) -> bool {
    tool_available(
        "kcat",
        Command::new("kcat").arg("-V"),
        "apt-get install -y kcat",
        test,
    )
}

#[test]
fn kcat_produces_with_every_codec_and_headers() {
    if !kcat("kcat -P -z") {
        return;
    }
    let broker = Broker::start("kcat-codecs");
    let topic = "kcat-codecs";
    let n = 20;
    broker.create_topic(topic, CODECS.len() as i32, &[]);
    let b = broker.bootstrap();
    for (p, (codec, _)) in CODECS.iter().enumerate() {
        let input: String = (0..n)
            .map(|i| format!("{codec}-k-{i}:{codec}-v-{i}\n"))
            .collect();
        let header = format!("codec={codec}");
        let out = run_bounded(
            Command::new("kcat").args([
                "-b",
                &b,
                "-P",
                "-t",
                topic,
                "-p",
                &p.to_string(),
                "-K:",
                "-z",
                codec,
                "-H",
                &header,
                "-X",
                "acks=all",
                "-X",
                "linger.ms=20",
                "-m",
                "20",
            ]),
            Duration::from_secs(45),
            Some(input.as_bytes()),
        );
        assert!(
            out.status.success(),
            "kcat -P -z {codec} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut net = broker.net();
    for (p, (codec, bits)) in CODECS.iter().enumerate() {
        let fetched = net.fetch_once(topic, p as i32, 0);
        let codecs = batch_codecs(&fetched.records);
        assert!(
            !codecs.is_empty() && codecs.iter().all(|c| c == bits),
            "kcat {codec}: stored batch codecs {codecs:?}, want all {bits}"
        );
    }
    let partitions: Vec<i32> = (0..CODECS.len() as i32).collect();
    let recs = read_all(&broker, topic, &partitions, n * CODECS.len());
    for (p, (codec, _)) in CODECS.iter().enumerate() {
        for i in 0..n {
            let r = &recs[&(p as i32, i as i64)];
            assert_eq!(r.key.as_deref(), Some(format!("{codec}-k-{i}").as_bytes()));
            assert_eq!(
                r.value.as_deref(),
                Some(format!("{codec}-v-{i}").as_bytes())
            );
            assert_eq!(
                r.headers,
                vec![("codec".to_string(), Some(codec.as_bytes().to_vec()))]
            );
        }
    }
}

/// `kcat -G GROUP TOPIC -e`: reads to the end of every partition, commits and leaves.
fn group_read(broker: &Broker, group: &str, topic: &str) -> BTreeMap<(i32, i64), String> {
    let out = run_bounded(
        Command::new("kcat").args([
            "-b",
            &broker.bootstrap(),
            "-G",
            group,
            topic,
            "-e",
            "-q",
            // Not `-o beginning`: in -G mode that overrides the committed offsets.
            "-X",
            "auto.offset.reset=earliest",
            "-f",
            "%p %o %s\n",
            "-X",
            "auto.commit.interval.ms=100",
            "-X",
            "session.timeout.ms=6000",
            "-m",
            "20",
        ]),
        Duration::from_secs(90),
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kcat -G failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.splitn(3, ' ').collect();
            assert_eq!(w.len(), 3, "kcat -G printed {l:?}");
            (
                (clients::parse(w[0]), clients::parse(w[1])),
                w[2].to_string(),
            )
        })
        .collect()
}

#[test]
fn kcat_group_consumer_commits_and_resumes() {
    if !kcat("kcat -G") {
        return;
    }
    let broker = Broker::start_with("kcat-group", group_options(""));
    let (topic, group) = ("kcat-group", "kcat-group");
    broker.create_topic(topic, 2, &[]);
    let first = produce_spread(&broker, topic, 2, "first", 40);
    let got = group_read(&broker, group, topic);
    let want: BTreeMap<(i32, i64), String> = first
        .iter()
        .map(|(k, v)| (*k, String::from_utf8_lossy(v).into_owned()))
        .collect();
    assert_eq!(got, want, "the first kcat -G run reads everything");
    let mut net = broker.net();
    assert_eq!(
        committed_offsets(&mut net, group, topic, 2),
        BTreeMap::from([(0, 20), (1, 20)]),
        "kcat -G committed the end of both partitions"
    );
    // A second run resumes at the committed offsets: only the new records.
    let second = produce_spread(&broker, topic, 2, "second", 10);
    let got = group_read(&broker, group, topic);
    let want: BTreeMap<(i32, i64), String> = second
        .iter()
        .map(|(k, v)| (*k, String::from_utf8_lossy(v).into_owned()))
        .collect();
    assert_eq!(
        got, want,
        "the second kcat -G run reads only the new records"
    );
    assert_eq!(
        committed_offsets(&mut net, group, topic, 2),
        BTreeMap::from([(0, 25), (1, 25)])
    );
}
