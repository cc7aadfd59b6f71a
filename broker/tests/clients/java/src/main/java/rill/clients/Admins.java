package rill.clients;

import static rill.clients.Runner.OUT;

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeProducersResult;
import org.apache.kafka.clients.admin.FeatureMetadata;
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
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.config.ConfigResource;

/**
 * AdminClient calls, one command each, printing what the broker answered:
 *
 * <pre>
 * admin-create-topic B TOPIC PARTITIONS [k=v...]  -> created TOPIC
 * admin-list-topics B                             -> topic NAME (internal topics hidden)
 * admin-describe-topic B TOPIC                    -> partition P leader L replicas R isr I
 * admin-create-partitions B TOPIC TOTAL           -> partitions TOPIC TOTAL
 * admin-delete-topic B TOPIC                      -> deleted TOPIC
 * admin-describe-configs B topic|broker NAME      -> config K=V source
 * admin-alter-configs B topic|broker NAME k=v|k=  -> altered (k= deletes k)
 * admin-list-offsets B TOPIC PARTITIONS SPEC      -> offset P OFFSET TIMESTAMP
 * admin-delete-records B TOPIC P OFFSET           -> low-watermark P OFFSET
 * admin-list-groups B                             -> group ID TYPE STATE
 * admin-describe-group B GROUP                    -> group ID state S type T members N / member CLIENT P,P
 * admin-list-group-offsets B GROUP                -> committed TOPIC P OFFSET
 * admin-alter-group-offsets B GROUP TOPIC P=O...  -> altered
 * admin-delete-group-offsets B GROUP TOPIC P...   -> deleted
 * admin-delete-group B GROUP                      -> deleted GROUP
 * admin-describe-cluster B                        -> cluster ID controller C / node ID HOST:PORT
 * admin-describe-features B                       -> feature NAME MIN MAX
 * admin-describe-log-dirs B BROKER                -> logdir PATH / replica TOPIC P SIZE
 * admin-describe-producers B TOPIC P              -> producer ID EPOCH LAST_SEQUENCE
 * admin-elect-leaders B TOPIC P                   -> elected TOPIC P
 * admin-list-transactions B                       -> transaction ID STATE
 * admin-describe-acls B                           -> acls N
 * </pre>
 */
final class Admins {
  private Admins() {}

  static Admin admin(String bootstrap) {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
    p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
    return Admin.create(p);
  }

  static <T> T get(org.apache.kafka.common.KafkaFuture<T> f) throws Exception {
    return f.get(40, TimeUnit.SECONDS);
  }

  static Map<String, String> kvs(String[] a, int from) {
    Map<String, String> out = new TreeMap<>();
    for (int i = from; i < a.length; i++) {
      int eq = a[i].indexOf('=');
      out.put(a[i].substring(0, eq), a[i].substring(eq + 1));
    }
    return out;
  }

  static ConfigResource resource(String type, String name) {
    return new ConfigResource(
        type.equals("broker") ? ConfigResource.Type.BROKER : ConfigResource.Type.TOPIC, name);
  }

  static String ids(Collection<Node> nodes) {
    return nodes.stream().map(n -> Integer.toString(n.id())).collect(Collectors.joining(","));
  }

  static int run(String name, String[] a) throws Exception {
    try (Admin admin = admin(a[0])) {
      switch (name) {
        case "admin-create-topic": {
          NewTopic t = new NewTopic(a[1], Integer.parseInt(a[2]), (short) 1).configs(kvs(a, 3));
          get(admin.createTopics(List.of(t)).all());
          OUT.println("created " + a[1]);
          return 0;
        }
        case "admin-list-topics":
          for (String t : new java.util.TreeSet<>(get(admin.listTopics().names()))) {
            OUT.println("topic " + t);
          }
          return 0;
        case "admin-describe-topic": {
          TopicDescription d = get(admin.describeTopics(List.of(a[1])).allTopicNames()).get(a[1]);
          OUT.println("topic " + d.name() + " id " + d.topicId() + " internal " + d.isInternal());
          for (TopicPartitionInfo p : d.partitions()) {
            OUT.println("partition " + p.partition() + " leader " + (p.leader() == null ? -1 : p.leader().id())
                + " replicas " + ids(p.replicas()) + " isr " + ids(p.isr()));
          }
          return 0;
        }
        case "admin-create-partitions":
          get(admin.createPartitions(Map.of(a[1], NewPartitions.increaseTo(Integer.parseInt(a[2])))).all());
          OUT.println("partitions " + a[1] + " " + a[2]);
          return 0;
        case "admin-delete-topic":
          get(admin.deleteTopics(List.of(a[1])).all());
          OUT.println("deleted " + a[1]);
          return 0;
        case "admin-describe-configs": {
          ConfigResource r = resource(a[1], a[2]);
          Config c = get(admin.describeConfigs(List.of(r)).all()).get(r);
          for (ConfigEntry e : c.entries()) {
            OUT.println("config " + e.name() + "=" + e.value() + " " + e.source());
          }
          return 0;
        }
        case "admin-alter-configs": {
          ConfigResource r = resource(a[1], a[2]);
          List<AlterConfigOp> ops = new ArrayList<>();
          for (Map.Entry<String, String> e : kvs(a, 3).entrySet()) {
            ops.add(e.getValue().isEmpty()
                ? new AlterConfigOp(new ConfigEntry(e.getKey(), null), AlterConfigOp.OpType.DELETE)
                : new AlterConfigOp(new ConfigEntry(e.getKey(), e.getValue()), AlterConfigOp.OpType.SET));
          }
          get(admin.incrementalAlterConfigs(Map.of(r, ops)).all());
          OUT.println("altered");
          return 0;
        }
        case "admin-list-offsets": {
          String topic = a[1];
          int partitions = Integer.parseInt(a[2]);
          OffsetSpec spec;
          if (a[3].equals("earliest")) {
            spec = OffsetSpec.earliest();
          } else if (a[3].equals("latest")) {
            spec = OffsetSpec.latest();
          } else if (a[3].equals("max-timestamp")) {
            spec = OffsetSpec.maxTimestamp();
          } else {
            spec = OffsetSpec.forTimestamp(Long.parseLong(a[3]));
          }
          Map<TopicPartition, OffsetSpec> req = new HashMap<>();
          for (int i = 0; i < partitions; i++) {
            req.put(new TopicPartition(topic, i), spec);
          }
          Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> res =
              get(admin.listOffsets(req).all());
          for (int i = 0; i < partitions; i++) {
            ListOffsetsResult.ListOffsetsResultInfo info = res.get(new TopicPartition(topic, i));
            OUT.println("offset " + i + " " + info.offset() + " " + info.timestamp());
          }
          return 0;
        }
        case "admin-delete-records": {
          TopicPartition tp = new TopicPartition(a[1], Integer.parseInt(a[2]));
          long lw = get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(Long.parseLong(a[3]))))
              .lowWatermarks().get(tp)).lowWatermark();
          OUT.println("low-watermark " + tp.partition() + " " + lw);
          return 0;
        }
        case "admin-list-groups":
          for (GroupListing g : get(admin.listGroups().all())) {
            OUT.println("group " + g.groupId() + " " + g.type().map(Object::toString).orElse("?") + " "
                + g.groupState().map(Object::toString).orElse("?"));
          }
          return 0;
        case "admin-describe-group": {
          ConsumerGroupDescription d = get(admin.describeConsumerGroups(List.of(a[1])).all()).get(a[1]);
          OUT.println("group " + d.groupId() + " state " + d.groupState() + " type " + d.type()
              + " members " + d.members().size());
          for (MemberDescription m : d.members()) {
            OUT.println("member " + m.clientId() + " " + Scenarios.list(m.assignment().topicPartitions()
                .stream().map(TopicPartition::partition).sorted().collect(Collectors.toList())));
          }
          return 0;
        }
        case "admin-list-group-offsets": {
          Map<TopicPartition, OffsetAndMetadata> offs =
              get(admin.listConsumerGroupOffsets(a[1]).partitionsToOffsetAndMetadata());
          for (Map.Entry<TopicPartition, OffsetAndMetadata> e : new TreeMap<>(
              offs.entrySet().stream().collect(Collectors.toMap(
                  e -> e.getKey().toString(), e -> e))).values().stream()
              .map(x -> x).collect(Collectors.toList())) {
            OUT.println("committed " + e.getKey().topic() + " " + e.getKey().partition() + " "
                + (e.getValue() == null ? -1 : e.getValue().offset()));
          }
          return 0;
        }
        case "admin-alter-group-offsets": {
          Map<TopicPartition, OffsetAndMetadata> offs = new HashMap<>();
          for (Map.Entry<String, String> e : kvs(a, 3).entrySet()) {
            offs.put(new TopicPartition(a[2], Integer.parseInt(e.getKey())),
                new OffsetAndMetadata(Long.parseLong(e.getValue())));
          }
          get(admin.alterConsumerGroupOffsets(a[1], offs).all());
          OUT.println("altered");
          return 0;
        }
        case "admin-delete-group-offsets": {
          Set<TopicPartition> tps = new java.util.HashSet<>();
          for (int i = 3; i < a.length; i++) {
            tps.add(new TopicPartition(a[2], Integer.parseInt(a[i])));
          }
          get(admin.deleteConsumerGroupOffsets(a[1], tps).all());
          OUT.println("deleted");
          return 0;
        }
        case "admin-delete-group":
          get(admin.deleteConsumerGroups(List.of(a[1])).all());
          OUT.println("deleted " + a[1]);
          return 0;
        case "admin-describe-cluster": {
          DescribeClusterResult r = admin.describeCluster();
          Node controller = get(r.controller());
          OUT.println("cluster " + get(r.clusterId()) + " controller " + (controller == null ? -1 : controller.id()));
          for (Node n : get(r.nodes())) {
            OUT.println("node " + n.id() + " " + n.host() + ":" + n.port());
          }
          return 0;
        }
        case "admin-describe-features": {
          FeatureMetadata f = get(admin.describeFeatures().featureMetadata());
          f.supportedFeatures().forEach((k, v) ->
              OUT.println("feature " + k + " " + v.minVersion() + " " + v.maxVersion()));
          f.finalizedFeatures().forEach((k, v) ->
              OUT.println("finalized " + k + " " + v.minVersionLevel() + " " + v.maxVersionLevel()));
          return 0;
        }
        case "admin-describe-log-dirs": {
          int broker = Integer.parseInt(a[1]);
          Map<String, LogDirDescription> dirs =
              get(admin.describeLogDirs(List.of(broker)).allDescriptions()).get(broker);
          for (Map.Entry<String, LogDirDescription> e : dirs.entrySet()) {
            OUT.println("logdir " + e.getKey() + " error " + e.getValue().error());
            for (Map.Entry<TopicPartition, ReplicaInfo> r : e.getValue().replicaInfos().entrySet()) {
              OUT.println("replica " + r.getKey().topic() + " " + r.getKey().partition() + " " + r.getValue().size());
            }
          }
          return 0;
        }
        case "admin-describe-producers": {
          TopicPartition tp = new TopicPartition(a[1], Integer.parseInt(a[2]));
          DescribeProducersResult.PartitionProducerState st =
              get(admin.describeProducers(List.of(tp)).partitionResult(tp));
          st.activeProducers().forEach(p ->
              OUT.println("producer " + p.producerId() + " " + p.producerEpoch() + " " + p.lastSequence()));
          OUT.println("producers " + st.activeProducers().size());
          return 0;
        }
        case "admin-elect-leaders": {
          TopicPartition tp = new TopicPartition(a[1], Integer.parseInt(a[2]));
          get(admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).partitions()).forEach((k, v) ->
              OUT.println("elected " + k.topic() + " " + k.partition() + " " + v.map(Throwable::toString).orElse("ok")));
          return 0;
        }
        case "admin-list-transactions":
          for (TransactionListing t : get(admin.listTransactions().all())) {
            OUT.println("transaction " + t.transactionalId() + " " + t.state());
          }
          OUT.println("transactions listed");
          return 0;
        case "admin-describe-acls":
          OUT.println("acls " + get(admin.describeAcls(AclBindingFilter.ANY).values()).size());
          return 0;
        default:
          throw new IllegalArgumentException("unknown command " + name);
      }
    }
  }
}
