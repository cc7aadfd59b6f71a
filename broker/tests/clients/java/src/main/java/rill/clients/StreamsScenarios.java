package rill.clients;

import static rill.clients.Runner.OUT;

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;

/**
 * Kafka Streams topologies. Each runs until its output topic holds the number of records the
 * test expects (read by a plain consumer), then closes the app and prints what it read as
 * {@code rec} lines; the test checks them and the app's committed offsets.
 *
 * <pre>
 * streams-stateless B IN OUT APP EXPECTED    filter(value has "keep") + mapValues(upper case)
 * streams-stateful  B IN OUT APP EXPECTED    groupByKey().count() (a compacted changelog topic)
 * streams-eos       B IN OUT APP EXPECTED    stateless, processing.guarantee=exactly_once_v2
 * streams-eos-count B IN OUT APP STATE_DIR   groupByKey().count() with exactly_once_v2, until
 *                                            killed (at most 10 minutes): the test kills the JVM
 * </pre>
 */
final class StreamsScenarios {
  private StreamsScenarios() {}

  static int run(String name, String[] a) throws Exception {
    if (name.equals("streams-eos-count")) {
      return eosCountUntilKilled(a);
    }
    String bootstrap = a[0];
    String in = a[1];
    String out = a[2];
    String app = a[3];
    int expected = Integer.parseInt(a[4]);
    java.nio.file.Path stateDir = java.nio.file.Files.createTempDirectory("rill-streams");
    Properties p = base(bootstrap, app, stateDir.toString());
    StreamsBuilder b = new StreamsBuilder();
    switch (name) {
      case "streams-stateless":
        stateless(b, in, out);
        break;
      case "streams-eos":
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        stateless(b, in, out);
        break;
      case "streams-stateful":
        // No record cache: every count update is emitted, so the output is deterministic.
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        count(b, in, out);
        break;
      default:
        throw new IllegalArgumentException("unknown command " + name);
    }
    AtomicReference<Throwable> failure = new AtomicReference<>();
    KafkaStreams streams = new KafkaStreams(b.build(), p);
    streams.setUncaughtExceptionHandler(e -> {
      failure.set(e);
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
          .SHUTDOWN_CLIENT;
    });
    streams.setStateListener((now, before) -> OUT.println("state " + before + " -> " + now));
    streams.start();
    try {
      long deadline = System.currentTimeMillis() + 90_000;
      while (streams.state() != KafkaStreams.State.RUNNING) {
        if (failure.get() != null) {
          throw new IllegalStateException("streams app failed", failure.get());
        }
        if (System.currentTimeMillis() > deadline) {
          throw new IllegalStateException("streams app not RUNNING within 90 s: " + streams.state());
        }
        Thread.sleep(100);
      }
      // Read the output with a plain consumer until EXPECTED records are there.
      String[] consume = {bootstrap, out, "1", Integer.toString(expected), "isolation.level=read_committed"};
      int code = Scenarios.run("consume", consume);
      if (failure.get() != null) {
        throw new IllegalStateException("streams app failed", failure.get());
      }
      return code;
    } finally {
      streams.close(Duration.ofSeconds(30));
      OUT.println("closed " + streams.state());
      streams.cleanUp();
      try (java.util.stream.Stream<java.nio.file.Path> files = java.nio.file.Files.walk(stateDir)) {
        files.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
      }
    }
  }

  /**
   * A stateful exactly-once app that runs until the test kills its JVM (kill -9) and starts it
   * again: the count store's changelog, the output and the input offsets are written in one
   * transaction per commit. The state directory and the consumer's group.instance.id stay the
   * same across restarts, as a deployment's would (a static member replaces its old self at
   * once, and the persisted process id keeps the transactional id, so the new producer fences
   * the old one and its open transaction is aborted).
   */
  static int eosCountUntilKilled(String[] a) throws Exception {
    String bootstrap = a[0];
    String in = a[1];
    String out = a[2];
    String app = a[3];
    String stateDir = a[4];
    Properties p = base(bootstrap, app, stateDir);
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    p.put(StreamsConfig.consumerPrefix("group.instance.id"), app + "-instance");
    p.put(StreamsConfig.consumerPrefix("session.timeout.ms"), "10000");
    StreamsBuilder b = new StreamsBuilder();
    count(b, in, out);
    KafkaStreams streams = new KafkaStreams(b.build(), p);
    AtomicReference<Throwable> failure = new AtomicReference<>();
    streams.setUncaughtExceptionHandler(e -> {
      failure.set(e);
      OUT.println("failed " + Runner.describe(e));
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
          .REPLACE_THREAD;
    });
    streams.setStateListener((now, before) -> {
      OUT.println("state " + before + " -> " + now);
      OUT.flush();
    });
    streams.start();
    long deadline = System.currentTimeMillis() + 600_000;
    while (System.currentTimeMillis() < deadline) {
      if (streams.state() == KafkaStreams.State.ERROR || streams.state() == KafkaStreams.State.NOT_RUNNING) {
        OUT.println("stopped " + streams.state());
        return 1;
      }
      Thread.sleep(100);
    }
    streams.close(Duration.ofSeconds(30));
    return 0;
  }

  /** What every app here sets: string serdes, 200 ms commits, replication factor 1, from the start. */
  static Properties base(String bootstrap, String app, String stateDir) {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "200");
    p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
    p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    return p;
  }

  /** groupByKey().count() into store "counts" (a compacted changelog), each update to OUT. */
  static void count(StreamsBuilder b, String in, String out) {
    b.stream(in, Consumed.with(Serdes.String(), Serdes.String()))
        .groupByKey()
        .count(Materialized.as("counts"))
        .toStream()
        .map((k, v) -> KeyValue.pair(k, Long.toString(v)))
        .to(out, Produced.with(Serdes.String(), Serdes.String()));
  }

  static void stateless(StreamsBuilder b, String in, String out) {
    b.stream(in, Consumed.with(Serdes.String(), Serdes.String()))
        .filter((k, v) -> v != null && v.contains("keep"))
        .mapValues(v -> v.toUpperCase(java.util.Locale.ROOT))
        .to(out, Produced.with(Serdes.String(), Serdes.String()));
  }
}
