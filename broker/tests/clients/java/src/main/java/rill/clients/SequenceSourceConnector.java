package rill.clients;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.source.SourceConnector;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

/**
 * A Kafka Connect source for the Connect test (broker/tests/client_connect.rs): writes {@code
 * seq-0, seq-1, ...} to the topic named by {@code topic}, keyed by the number, and keeps the
 * next number as its source offset, so a worker restarted later goes on from what Connect's
 * offsets topic (a compacted topic on the broker under test) says.
 */
public final class SequenceSourceConnector extends SourceConnector {
  private Map<String, String> config;

  @Override
  public String version() {
    return "1";
  }

  @Override
  public void start(Map<String, String> props) {
    config = new HashMap<>(props);
  }

  @Override
  public Class<? extends Task> taskClass() {
    return SequenceSourceTask.class;
  }

  @Override
  public List<Map<String, String>> taskConfigs(int maxTasks) {
    List<Map<String, String>> out = new ArrayList<>();
    out.add(config);
    return out;
  }

  @Override
  public void stop() {}

  @Override
  public ConfigDef config() {
    return new ConfigDef()
        .define("topic", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "topic to write to");
  }

  /** The connector's one task. */
  public static final class SequenceSourceTask extends SourceTask {
    private static final Map<String, String> PARTITION = Collections.singletonMap("source", "seq");
    private String topic;
    private long next;

    @Override
    public String version() {
      return "1";
    }

    @Override
    public void start(Map<String, String> props) {
      topic = props.get("topic");
      Map<String, Object> offset = context.offsetStorageReader().offset(PARTITION);
      next = offset == null ? 0 : ((Number) offset.get("next")).longValue();
      System.err.println("sequence source starts at " + next);
    }

    @Override
    public List<SourceRecord> poll() throws InterruptedException {
      Thread.sleep(20);
      List<SourceRecord> out = new ArrayList<>();
      for (int i = 0; i < 10; i++) {
        long n = next++;
        out.add(
            new SourceRecord(
                PARTITION,
                Collections.singletonMap("next", next),
                topic,
                0,
                Schema.STRING_SCHEMA,
                "k" + n,
                Schema.STRING_SCHEMA,
                "seq-" + n));
      }
      return out;
    }

    @Override
    public void stop() {}
  }
}
