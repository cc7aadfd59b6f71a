package rill.clients;

import static rill.clients.Runner.OUT;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeProducersResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.LogTruncationException;
import org.apache.kafka.clients.consumer.OffsetOutOfRangeException;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The kafka-clients scenarios of the matrix. Each prints what it saw, one fact a line, for the
 * Rust test to check against the broker and against rdkafka; none decides on its own that it
 * passed beyond failing loudly (an exception, exit 1) when the client reports an error.
 *
 * <p>Line formats shared with the Go, Node and Python programs:
 *
 * <ul>
 *   <li>{@code produced P FIRST LAST}: the offsets the broker acknowledged for one partition;
 *   <li>{@code rec P OFFSET KEY VALUE HEADERS}: one consumed record (HEADERS as k=v;k=v, "-" for
 *       none; KEY "-" for null);
 *   <li>{@code member NAME assigned P,P,...} and {@code member NAME consumed N}.
 * </ul>
 */
final class Scenarios {
  private Scenarios() {}

  static final long WAIT_MS = 60_000;

  static int run(String name, String[] a) throws Exception {
    switch (name) {
      case "produce":
        return produce(a);
      case "consume":
        return consume(a);
      case "group":
        return group(a);
      case "produce-txn":
        return produceTransactional(a);
      case "produce-txn-zombie":
        return produceTransactionalZombie(a);
      case "consume-truncation":
        return consumeTruncation(a);
      default:
        return Admins.run(name, a);
    }
  }

  /** Extra client properties given as trailing k=v arguments. */
  static Properties props(String bootstrap, String[] a, int from) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("client.dns.lookup", "use_all_dns_ips");
    for (int i = from; i < a.length; i++) {
      int eq = a[i].indexOf('=');
      p.put(a[i].substring(0, eq), a[i].substring(eq + 1));
    }
    return p;
  }

  static KafkaProducer<String, String> producer(Properties p) {
    p.putIfAbsent(ProducerConfig.ACKS_CONFIG, "all");
    p.putIfAbsent(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    p.putIfAbsent(ProducerConfig.LINGER_MS_CONFIG, "5");
    p.putIfAbsent(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
    p.putIfAbsent(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
    p.putIfAbsent(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
    return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
  }

  /**
   * produce BOOTSTRAP TOPIC CODEC PARTITION COUNT LABEL [k=v...]: COUNT records to one
   * partition, idempotent with acks=all unless overridden; key LABEL-k-i, value "LABEL-v-i;"
   * four times (compressible), headers seq=i and client=java.
   */
  static int produce(String[] a) throws Exception {
    String topic = a[1];
    int partition = Integer.parseInt(a[3]);
    int count = Integer.parseInt(a[4]);
    String label = a[5];
    Properties p = props(a[0], a, 6);
    p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, a[2]);
    try (KafkaProducer<String, String> producer = producer(p)) {
      List<Future<RecordMetadata>> sent = new ArrayList<>();
      for (int i = 0; i < count; i++) {
        ProducerRecord<String, String> r =
            new ProducerRecord<>(topic, partition, label + "-k-" + i, (label + "-v-" + i + ";").repeat(4));
        r.headers().add("seq", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
        r.headers().add("client", "java".getBytes(StandardCharsets.UTF_8));
        sent.add(producer.send(r));
      }
      producer.flush();
      long first = -1;
      long last = -1;
      for (Future<RecordMetadata> f : sent) {
        RecordMetadata md = f.get(30, TimeUnit.SECONDS);
        if (first < 0) {
          first = md.offset();
        }
        if (last >= 0 && md.offset() != last + 1) {
          throw new IllegalStateException("offsets not dense: " + last + " then " + md.offset());
        }
        last = md.offset();
      }
      OUT.println("produced " + partition + " " + first + " " + last);
    }
    return 0;
  }

  /**
   * produce-txn BOOTSTRAP TOPIC PARTITION COUNT LABEL: a transactional producer
   * (transactional.id LABEL) commits one transaction of COUNT records and aborts one of
   * COUNT more; prints {@code committed P FIRST LAST}.
   */
  static int produceTransactional(String[] a) throws Exception {
    String topic = a[1];
    int partition = Integer.parseInt(a[2]);
    int count = Integer.parseInt(a[3]);
    String label = a[4];
    Properties p = props(a[0], a, 5);
    p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, label);
    try (KafkaProducer<String, String> producer = producer(p)) {
      producer.initTransactions();
      producer.beginTransaction();
      List<Future<RecordMetadata>> sent = new ArrayList<>();
      for (int i = 0; i < count; i++) {
        sent.add(producer.send(new ProducerRecord<>(topic, partition, label + "-k-" + i, label + "-v-" + i)));
      }
      producer.commitTransaction();
      long first = sent.get(0).get(30, TimeUnit.SECONDS).offset();
      long last = sent.get(count - 1).get(30, TimeUnit.SECONDS).offset();
      OUT.println("committed " + partition + " " + first + " " + last);
      producer.beginTransaction();
      for (int i = 0; i < count; i++) {
        producer.send(new ProducerRecord<>(topic, partition, label + "-aborted-" + i, "aborted"));
      }
      producer.abortTransaction();
      OUT.println("aborted " + count);
    }
    return 0;
  }

  /**
   * produce-txn-zombie BOOTSTRAP TOPIC PARTITION LABEL: a transactional producer (the zombie)
   * opens a transaction and sends one record; a second instance with the same
   * transactional.id starts (initTransactions fences the first and aborts its transaction),
   * commits a record of its own; the zombie's commit then fails. Prints {@code fenced
   * EXCEPTION-CLASS} and {@code committed P OFFSET}.
   */
  static int produceTransactionalZombie(String[] a) throws Exception {
    String topic = a[1];
    int partition = Integer.parseInt(a[2]);
    String label = a[3];
    Properties p = props(a[0], a, 4);
    p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, label);
    Properties p2 = new Properties();
    p2.putAll(p);
    try (KafkaProducer<String, String> zombie = producer(p);
        KafkaProducer<String, String> successor = producer(p2)) {
      zombie.initTransactions();
      zombie.beginTransaction();
      zombie.send(new ProducerRecord<>(topic, partition, label + "-zombie", "zombie")).get(30, TimeUnit.SECONDS);
      successor.initTransactions();
      successor.beginTransaction();
      long offset = successor.send(new ProducerRecord<>(topic, partition, label + "-successor", "successor"))
          .get(30, TimeUnit.SECONDS).offset();
      successor.commitTransaction();
      OUT.println("committed " + partition + " " + offset);
      try {
        zombie.commitTransaction();
        OUT.println("fenced none");
      } catch (KafkaException e) {
        OUT.println("fenced " + e.getClass().getSimpleName());
      }
    }
    return 0;
  }

  static String headers(Iterable<Header> hs) {
    List<String> out = new ArrayList<>();
    for (Header h : hs) {
      out.add(h.key() + "=" + (h.value() == null ? "" : new String(h.value(), StandardCharsets.UTF_8)));
    }
    return out.isEmpty() ? "-" : String.join(";", out);
  }

  static String rec(ConsumerRecord<String, String> r) {
    return "rec " + r.partition() + " " + r.offset() + " " + (r.key() == null ? "-" : r.key()) + " "
        + (r.value() == null ? "-" : r.value()) + " " + headers(r.headers());
  }

  static KafkaConsumer<String, String> consumer(Properties p) {
    p.putIfAbsent(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.putIfAbsent(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    p.putIfAbsent(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "200");
    p.putIfAbsent(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
    return new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer());
  }

  /**
   * consume BOOTSTRAP TOPIC PARTITIONS COUNT [k=v...]: assigns every partition from the
   * beginning (no group) and prints exactly the first COUNT records it gets, then whatever more
   * arrives within a second (the test fails on extras).
   */
  static int consume(String[] a) throws Exception {
    String topic = a[1];
    int partitions = Integer.parseInt(a[2]);
    int count = Integer.parseInt(a[3]);
    try (KafkaConsumer<String, String> c = consumer(props(a[0], a, 4))) {
      List<TopicPartition> tps = new ArrayList<>();
      for (int i = 0; i < partitions; i++) {
        tps.add(new TopicPartition(topic, i));
      }
      c.assign(tps);
      c.seekToBeginning(tps);
      int got = 0;
      long deadline = System.currentTimeMillis() + WAIT_MS;
      while (got < count) {
        if (System.currentTimeMillis() > deadline) {
          throw new IllegalStateException("consumed " + got + " of " + count + " records");
        }
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
          OUT.println(rec(r));
          got++;
        }
      }
      long settle = System.currentTimeMillis() + 1000;
      while (System.currentTimeMillis() < settle) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
          OUT.println(rec(r));
          got++;
        }
      }
      Map<TopicPartition, Long> ends = c.endOffsets(tps, Duration.ofSeconds(20));
      for (TopicPartition tp : tps) {
        OUT.println("end " + tp.partition() + " " + ends.get(tp));
      }
      OUT.println("consumed " + got);
    }
    return 0;
  }

  /**
   * consume-truncation BOOTSTRAP TOPIC PARTITION UNTIL [k=v...]: assigns one partition (no
   * group, auto.offset.reset=none), reads from offset 0 until its position reaches UNTIL and
   * prints {@code position P OFFSET EPOCH} (the leader epoch of the last record), pauses
   * ("positioned") while the test moves the leadership, then polls for up to a minute: {@code
   * truncated P OFFSET} when the client detects that the log was truncated below its position
   * (KIP-320: LogTruncationException with the first divergent offset), {@code out-of-range P
   * OFFSET} when it is only told its offset is out of range, {@code rec ...} for each record it
   * reads instead.
   */
  static int consumeTruncation(String[] a) throws Exception {
    TopicPartition tp = new TopicPartition(a[1], Integer.parseInt(a[2]));
    long until = Long.parseLong(a[3]);
    Properties p = props(a[0], a, 4);
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
    try (KafkaConsumer<String, String> c = consumer(p)) {
      c.assign(List.of(tp));
      c.seek(tp, 0);
      int epoch = -1;
      long deadline = System.currentTimeMillis() + WAIT_MS;
      while (c.position(tp) < until) {
        if (System.currentTimeMillis() > deadline) {
          throw new IllegalStateException("position " + c.position(tp) + ", wanted " + until);
        }
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
          epoch = r.leaderEpoch().orElse(-1);
        }
      }
      OUT.println("position " + tp.partition() + " " + c.position(tp) + " " + epoch);
      Runner.pause("positioned");
      deadline = System.currentTimeMillis() + WAIT_MS;
      while (System.currentTimeMillis() < deadline) {
        try {
          for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
            OUT.println(rec(r));
          }
        } catch (LogTruncationException e) {
          for (Map.Entry<TopicPartition, OffsetAndMetadata> d : e.divergentOffsets().entrySet()) {
            OUT.println("truncated " + d.getKey().partition() + " " + d.getValue().offset());
          }
          return 0;
        } catch (OffsetOutOfRangeException e) {
          for (Map.Entry<TopicPartition, Long> o : e.offsetOutOfRangePartitions().entrySet()) {
            OUT.println("out-of-range " + o.getKey().partition() + " " + o.getValue());
          }
          return 0;
        }
      }
    }
    return 0;
  }

  /** One group member polling its own consumer on its own thread. */
  static final class Member extends Thread {
    final String name;
    final Properties props;
    final String topic;
    final Map<String, String> ledger;
    final List<String> duplicates;
    volatile Set<Integer> assigned = Collections.emptySet();
    volatile boolean stop;
    volatile boolean closed;
    final AtomicReference<Throwable> error = new AtomicReference<>();
    volatile int consumed;

    Member(String name, Properties props, String topic, Map<String, String> ledger, List<String> dups) {
      super(name);
      setDaemon(true);
      this.name = name;
      this.props = props;
      this.topic = topic;
      this.ledger = ledger;
      this.duplicates = dups;
    }

    @Override
    public void run() {
      try (KafkaConsumer<String, String> c = consumer(props)) {
        c.subscribe(List.of(topic));
        while (!stop) {
          ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(100));
          for (ConsumerRecord<String, String> r : rs) {
            String pos = r.partition() + "/" + r.offset();
            String prev = ledger.putIfAbsent(pos, name + " " + r.key() + " " + r.value());
            if (prev != null) {
              synchronized (duplicates) {
                duplicates.add(pos + " read by " + prev + " and by " + name);
              }
            }
            consumed++;
          }
          if (!rs.isEmpty()) {
            c.commitSync(Duration.ofSeconds(20));
          }
          assigned = c.assignment().stream().map(TopicPartition::partition)
              .collect(Collectors.toCollection(TreeSet::new));
        }
        c.commitSync(Duration.ofSeconds(20));
      } catch (Throwable t) {
        error.set(t);
      }
      closed = true;
    }
  }

  interface Cond {
    boolean holds();
  }

  static void waitFor(String what, Cond c, List<Member> members) throws Exception {
    long deadline = System.currentTimeMillis() + WAIT_MS;
    while (!c.holds()) {
      for (Member m : members) {
        if (m.error.get() != null) {
          throw new IllegalStateException(m.name + " failed", m.error.get());
        }
      }
      if (System.currentTimeMillis() > deadline) {
        StringBuilder sb = new StringBuilder();
        for (Member m : members) {
          sb.append(' ').append(m.name).append('=').append(m.assigned);
        }
        throw new IllegalStateException(what + ": not within " + WAIT_MS + " ms (" + sb + ")");
      }
      Thread.sleep(50);
    }
  }

  static String list(Collection<Integer> ps) {
    return ps.isEmpty() ? "-" : ps.stream().map(String::valueOf).collect(Collectors.joining(","));
  }

  /** Produces COUNT records round robin over PARTITIONS; returns position -> "key value". */
  static Map<String, String> produceSpread(String bootstrap, String topic, int partitions, String label, int count)
      throws Exception {
    Map<String, String> out = new TreeMap<>();
    Properties p = props(bootstrap, new String[0], 0);
    try (KafkaProducer<String, String> producer = producer(p)) {
      List<Future<RecordMetadata>> fs = new ArrayList<>();
      List<String> kv = new ArrayList<>();
      for (int i = 0; i < count; i++) {
        String k = label + "-k-" + i;
        String v = label + "-v-" + i;
        fs.add(producer.send(new ProducerRecord<>(topic, i % partitions, k, v)));
        kv.add(k + " " + v);
      }
      producer.flush();
      for (int i = 0; i < count; i++) {
        RecordMetadata md = fs.get(i).get(30, TimeUnit.SECONDS);
        out.put(md.partition() + "/" + md.offset(), kv.get(i));
      }
    }
    return out;
  }

  static void checkExact(String what, Map<String, String> ledger, List<String> dups, Map<String, String> want) {
    if (!dups.isEmpty()) {
      throw new IllegalStateException(what + ": consumed twice: " + dups);
    }
    for (Map.Entry<String, String> e : want.entrySet()) {
      String got = ledger.get(e.getKey());
      if (got == null || !got.endsWith(" " + e.getValue())) {
        throw new IllegalStateException(what + ": at " + e.getKey() + " got " + got + ", want " + e.getValue());
      }
    }
    if (ledger.size() != want.size()) {
      throw new IllegalStateException(what + ": consumed " + ledger.size() + " records, want " + want.size());
    }
  }

  /**
   * group BOOTSTRAP TOPIC PARTITIONS GROUP PROTOCOL(classic|consumer): two members split the
   * topic (pause "balanced"), consume what is produced exactly once with commitSync; one leaves
   * and the other takes every partition (pause "takeover"); both gone (pause "empty"), a third
   * member resumes from the committed offsets and reads exactly the new records.
   */
  static int group(String[] a) throws Exception {
    String bootstrap = a[0];
    String topic = a[1];
    int partitions = Integer.parseInt(a[2]);
    String group = a[3];
    String protocol = a[4];
    Set<Integer> all = new TreeSet<>();
    for (int i = 0; i < partitions; i++) {
      all.add(i);
    }
    Map<String, String> ledger = new ConcurrentHashMap<>();
    List<String> dups = new ArrayList<>();
    List<Member> members = new ArrayList<>();
    for (String n : List.of("java-m1", "java-m2")) {
      members.add(new Member(n, memberProps(bootstrap, group, protocol, n), topic, ledger, dups));
    }
    members.forEach(Thread::start);
    Member m1 = members.get(0);
    Member m2 = members.get(1);
    waitFor("two members own disjoint partitions covering the topic", () -> {
      Set<Integer> x = m1.assigned;
      Set<Integer> y = m2.assigned;
      Set<Integer> union = new TreeSet<>(x);
      union.addAll(y);
      return !x.isEmpty() && !y.isEmpty() && Collections.disjoint(x, y) && union.equals(all);
    }, members);
    for (Member m : members) {
      OUT.println("member " + m.name + " assigned " + list(m.assigned));
    }
    Runner.pause("balanced");

    Map<String, String> want = produceSpread(bootstrap, topic, partitions, "phase1", 200);
    waitFor("every phase1 record consumed", () -> ledger.size() >= want.size(), members);
    Thread.sleep(500);
    checkExact("two members", ledger, dups, want);
    for (Member m : members) {
      OUT.println("member " + m.name + " consumed " + m.consumed);
    }

    m1.stop = true;
    m1.join(30_000);
    if (!m1.closed || m1.error.get() != null) {
      throw new IllegalStateException("java-m1 did not close cleanly", m1.error.get());
    }
    waitFor("java-m2 takes every partition", () -> m2.assigned.equals(all), List.of(m2));
    OUT.println("member " + m2.name + " assigned " + list(m2.assigned));
    Runner.pause("takeover");

    ledger.clear();
    Map<String, String> want2 = produceSpread(bootstrap, topic, partitions, "phase2", 100);
    waitFor("every phase2 record consumed", () -> ledger.size() >= want2.size(), List.of(m2));
    Thread.sleep(500);
    checkExact("survivor", ledger, dups, want2);
    m2.stop = true;
    m2.join(30_000);
    if (!m2.closed || m2.error.get() != null) {
      throw new IllegalStateException("java-m2 did not close cleanly", m2.error.get());
    }
    Runner.pause("empty");

    ledger.clear();
    Map<String, String> want3 = produceSpread(bootstrap, topic, partitions, "phase3", 20);
    Member m3 = new Member("java-m3", memberProps(bootstrap, group, protocol, "java-m3"), topic, ledger, dups);
    m3.start();
    waitFor("java-m3 reads the new records", () -> ledger.size() >= want3.size(), List.of(m3));
    Thread.sleep(1000);
    checkExact("resumed member", ledger, dups, want3);
    OUT.println("member java-m3 consumed " + m3.consumed);
    m3.stop = true;
    m3.join(30_000);
    if (!m3.closed || m3.error.get() != null) {
      throw new IllegalStateException("java-m3 did not close cleanly", m3.error.get());
    }
    return 0;
  }

  static Properties memberProps(String bootstrap, String group, String protocol, String name) {
    Properties p = props(bootstrap, new String[0], 0);
    p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    p.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
    p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
    if (protocol.equals("classic")) {
      p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
      p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
    }
    return p;
  }
}
