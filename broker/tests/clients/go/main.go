// Command franz is the franz-go (kgo + kadm) side of Rill's client matrix
// (broker/tests/client_go.rs). It reads commands from stdin, one per line, arguments
// separated by tabs, and answers each with its output lines and "@@exit CODE"; "@@pause
// LABEL" waits for one stdin line. The commands and their output lines are those of the Java
// program (tests/clients/java/.../Scenarios.java and Admins.java), so the Rust checks are
// shared.
//
// Set RILL_CLIENT_LOG=debug to get kgo's debug log on stderr.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const waitFor = 60 * time.Second

var stdin = bufio.NewScanner(os.Stdin)

// errUnsupported marks a command this client has no API for (exit 3).
var errUnsupported = errors.New("unsupported by franz-go")

func main() {
	stdin.Buffer(make([]byte, 1<<20), 1<<20)
	fmt.Println("@@ready")
	for stdin.Scan() {
		line := stdin.Text()
		if line == "" {
			continue
		}
		args := strings.Split(line, "\t")
		code := 0
		if err := run(args[0], args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "command %q failed: %v\n", line, err)
			fmt.Printf("error %v\n", strings.ReplaceAll(err.Error(), "\n", " "))
			code = 1
			if errors.Is(err, errUnsupported) {
				code = 3
			}
		}
		fmt.Printf("@@exit %d\n", code)
	}
}

func pause(label string) error {
	fmt.Printf("@@pause %s\n", label)
	if !stdin.Scan() {
		return fmt.Errorf("stdin closed during pause %s", label)
	}
	return nil
}

func opts(bootstrap string, extra ...kgo.Opt) []kgo.Opt {
	o := []kgo.Opt{
		kgo.SeedBrokers(bootstrap),
		kgo.RequestTimeoutOverhead(15 * time.Second),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}
	if lvl := os.Getenv("RILL_CLIENT_LOG"); lvl == "debug" {
		o = append(o, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelDebug, nil)))
	} else {
		o = append(o, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelWarn, nil)))
	}
	return append(o, extra...)
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), waitFor)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(fmt.Sprintf("not a number: %q", s))
	}
	return n
}

func run(name string, a []string) error {
	switch name {
	case "produce":
		return produce(a)
	case "txn-produce":
		return txnProduce(a)
	case "consume":
		return consume(a)
	case "group":
		return group(a)
	default:
		return admin(name, a)
	}
}

func codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown codec %q", name)
}

// produce BOOTSTRAP TOPIC CODEC PARTITION COUNT LABEL: idempotent (kgo's default), acks=all.
func produce(a []string) error {
	topic, partition, count, label := a[1], int32(atoi(a[3])), atoi(a[4]), a[5]
	c, err := codec(a[2])
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts(a[0],
		kgo.ProducerBatchCompression(c),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordDeliveryTimeout(30*time.Second),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, count)
	for i := range recs {
		recs[i] = &kgo.Record{
			Topic:     topic,
			Partition: partition,
			Key:       []byte(fmt.Sprintf("%s-k-%d", label, i)),
			Value:     []byte(strings.Repeat(fmt.Sprintf("%s-v-%d;", label, i), 4)),
			Headers: []kgo.RecordHeader{
				{Key: "seq", Value: []byte(strconv.Itoa(i))},
				{Key: "client", Value: []byte("go")},
			},
		}
	}
	c1, cancel := ctx()
	defer cancel()
	if err := cl.ProduceSync(c1, recs...).FirstErr(); err != nil {
		return err
	}
	for i := 1; i < count; i++ {
		if recs[i].Offset != recs[i-1].Offset+1 {
			return fmt.Errorf("offsets not dense: %d then %d", recs[i-1].Offset, recs[i].Offset)
		}
	}
	fmt.Printf("produced %d %d %d\n", partition, recs[0].Offset, recs[count-1].Offset)
	return nil
}

// txn-produce BOOTSTRAP TOPIC PARTITION COUNT LABEL: a transactional producer
// (transactional id LABEL) commits one transaction of COUNT records and aborts one of COUNT
// more; prints "committed P FIRST LAST" and "aborted N".
func txnProduce(a []string) error {
	topic, partition, count, label := a[1], int32(atoi(a[2])), atoi(a[3]), a[4]
	cl, err := kgo.NewClient(opts(a[0],
		kgo.TransactionalID(label),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordDeliveryTimeout(30*time.Second),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	records := func(kind string) []*kgo.Record {
		recs := make([]*kgo.Record, count)
		for i := range recs {
			recs[i] = &kgo.Record{
				Topic:     topic,
				Partition: partition,
				Key:       []byte(fmt.Sprintf("%s-%s-%d", label, kind, i)),
				Value:     []byte(kind),
			}
		}
		return recs
	}
	c1, cancel := ctx()
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	committed := records("committed")
	if err := cl.ProduceSync(c1, committed...).FirstErr(); err != nil {
		return err
	}
	if err := cl.EndTransaction(c1, kgo.TryCommit); err != nil {
		return err
	}
	fmt.Printf("committed %d %d %d\n", partition, committed[0].Offset, committed[count-1].Offset)
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	if err := cl.ProduceSync(c1, records("aborted")...).FirstErr(); err != nil {
		return err
	}
	if err := cl.EndTransaction(c1, kgo.TryAbort); err != nil {
		return err
	}
	fmt.Printf("aborted %d\n", count)
	return nil
}

func recLine(r *kgo.Record) string {
	key := "-"
	if r.Key != nil {
		key = string(r.Key)
	}
	value := "-"
	if r.Value != nil {
		value = string(r.Value)
	}
	hs := []string{}
	for _, h := range r.Headers {
		hs = append(hs, h.Key+"="+string(h.Value))
	}
	headers := "-"
	if len(hs) > 0 {
		headers = strings.Join(hs, ";")
	}
	return fmt.Sprintf("rec %d %d %s %s %s", r.Partition, r.Offset, key, value, headers)
}

// consume BOOTSTRAP TOPIC PARTITIONS COUNT: assign from the beginning, no group.
func consume(a []string) error {
	topic, partitions, count := a[1], atoi(a[2]), atoi(a[3])
	assign := map[int32]kgo.Offset{}
	for p := 0; p < partitions; p++ {
		assign[int32(p)] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(opts(a[0], kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	got := 0
	deadline := time.Now().Add(waitFor)
	settle := time.Time{}
	for {
		if got >= count && settle.IsZero() {
			settle = time.Now().Add(time.Second)
		}
		if !settle.IsZero() && time.Now().After(settle) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("consumed %d of %d records", got, count)
		}
		c1, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := cl.PollFetches(c1)
		cancel()
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				return fmt.Errorf("fetch %s/%d: %w", e.Topic, e.Partition, e.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			fmt.Println(recLine(r))
			got++
		})
	}
	adm := kadm.NewClient(cl)
	c1, cancel := ctx()
	defer cancel()
	ends, err := adm.ListEndOffsets(c1, topic)
	if err != nil {
		return err
	}
	for p := 0; p < partitions; p++ {
		o, _ := ends.Lookup(topic, int32(p))
		if o.Err != nil {
			return o.Err
		}
		fmt.Printf("end %d %d\n", p, o.Offset)
	}
	fmt.Printf("consumed %d\n", got)
	return nil
}

// ledger is what the group's members consumed, by position.
type ledger struct {
	mu   sync.Mutex
	got  map[string]string
	dups []string
}

func (l *ledger) add(who string, r *kgo.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pos := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
	if prev, ok := l.got[pos]; ok {
		l.dups = append(l.dups, pos+" read by "+prev+" and "+who)
		return
	}
	l.got[pos] = who + " " + string(r.Key) + " " + string(r.Value)
}

func (l *ledger) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.got)
}

func (l *ledger) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = map[string]string{}
}

func (l *ledger) check(what string, want map[string]string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.dups) > 0 {
		return fmt.Errorf("%s: consumed twice: %v", what, l.dups)
	}
	for pos, kv := range want {
		if got, ok := l.got[pos]; !ok || !strings.HasSuffix(got, " "+kv) {
			return fmt.Errorf("%s: at %s got %q, want %q", what, pos, got, kv)
		}
	}
	if len(l.got) != len(want) {
		return fmt.Errorf("%s: consumed %d records, want %d", what, len(l.got), len(want))
	}
	return nil
}

type member struct {
	name     string
	cl       *kgo.Client
	mu       sync.Mutex
	assigned map[int32]bool
	consumed int
	err      error
	stop     chan struct{}
	done     chan struct{}
}

func (m *member) owned() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []int{}
	for p := range m.assigned {
		out = append(out, int(p))
	}
	sort.Ints(out)
	return out
}

func (m *member) failed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func newMember(bootstrap, topic, group, protocol, name string, l *ledger) (*member, error) {
	m := &member{name: name, assigned: map[int32]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	o := opts(bootstrap,
		kgo.ClientID(name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range a[topic] {
				m.assigned[p] = true
			}
		}),
		kgo.OnPartitionsRevoked(func(c context.Context, cl *kgo.Client, a map[string][]int32) {
			if err := cl.CommitUncommittedOffsets(c); err != nil {
				fmt.Fprintf(os.Stderr, "%s: commit on revoke: %v\n", name, err)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range a[topic] {
				delete(m.assigned, p)
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range a[topic] {
				delete(m.assigned, p)
			}
		}),
	)
	if protocol == "consumer" {
		o = append(o, kgo.ServerSideBalancer(), kgo.Balancers(kgo.CooperativeStickyBalancer()))
	} else {
		o = append(o, kgo.SessionTimeout(10*time.Second), kgo.HeartbeatInterval(500*time.Millisecond))
	}
	cl, err := kgo.NewClient(o...)
	if err != nil {
		return nil, err
	}
	m.cl = cl
	go func() {
		defer close(m.done)
		for {
			select {
			case <-m.stop:
				c1, cancel := ctx()
				err := cl.CommitUncommittedOffsets(c1)
				cancel()
				cl.Close() // leaves the group
				if err != nil {
					m.mu.Lock()
					m.err = err
					m.mu.Unlock()
				}
				return
			default:
			}
			c1, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			fs := cl.PollFetches(c1)
			cancel()
			for _, e := range fs.Errors() {
				if !errors.Is(e.Err, context.DeadlineExceeded) {
					m.mu.Lock()
					m.err = fmt.Errorf("%s: fetch %s/%d: %w", name, e.Topic, e.Partition, e.Err)
					m.mu.Unlock()
				}
			}
			n := 0
			fs.EachRecord(func(r *kgo.Record) {
				l.add(name, r)
				n++
			})
			if n > 0 {
				c2, cancel := ctx()
				err := cl.CommitUncommittedOffsets(c2)
				cancel()
				m.mu.Lock()
				m.consumed += n
				if err != nil {
					m.err = fmt.Errorf("%s: commit: %w", name, err)
				}
				m.mu.Unlock()
			}
		}
	}()
	return m, nil
}

func (m *member) close() error {
	close(m.stop)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not close within 30 s", m.name)
	}
	return m.failed()
}

func wait(what string, cond func() bool, ms ...*member) error {
	deadline := time.Now().Add(waitFor)
	for !cond() {
		for _, m := range ms {
			if err := m.failed(); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
		}
		if time.Now().After(deadline) {
			state := []string{}
			for _, m := range ms {
				state = append(state, fmt.Sprintf("%s=%v", m.name, m.owned()))
			}
			return fmt.Errorf("%s: not within %v (%v)", what, waitFor, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func list(ps []int) string {
	if len(ps) == 0 {
		return "-"
	}
	s := []string{}
	for _, p := range ps {
		s = append(s, strconv.Itoa(p))
	}
	return strings.Join(s, ",")
}

// produceSpread produces count records round robin; returns position -> "key value".
func produceSpread(bootstrap, topic string, partitions int, label string, count int) (map[string]string, error) {
	cl, err := kgo.NewClient(opts(bootstrap, kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, count)
	for i := range recs {
		recs[i] = &kgo.Record{
			Topic: topic, Partition: int32(i % partitions),
			Key:   []byte(fmt.Sprintf("%s-k-%d", label, i)),
			Value: []byte(fmt.Sprintf("%s-v-%d", label, i)),
		}
	}
	c1, cancel := ctx()
	defer cancel()
	if err := cl.ProduceSync(c1, recs...).FirstErr(); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range recs {
		out[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = string(r.Key) + " " + string(r.Value)
	}
	return out, nil
}

// group BOOTSTRAP TOPIC PARTITIONS GROUP PROTOCOL: see Scenarios.group in the Java program.
func group(a []string) error {
	bootstrap, topic, partitions, groupID, protocol := a[0], a[1], atoi(a[2]), a[3], a[4]
	all := list(func() []int {
		out := []int{}
		for p := 0; p < partitions; p++ {
			out = append(out, p)
		}
		return out
	}())
	l := &ledger{got: map[string]string{}}
	m1, err := newMember(bootstrap, topic, groupID, protocol, "go-m1", l)
	if err != nil {
		return err
	}
	m2, err := newMember(bootstrap, topic, groupID, protocol, "go-m2", l)
	if err != nil {
		return err
	}
	split := func() bool {
		x, y := m1.owned(), m2.owned()
		if len(x) == 0 || len(y) == 0 {
			return false
		}
		u := append(append([]int{}, x...), y...)
		sort.Ints(u)
		return list(u) == all
	}
	if err := wait("two members own disjoint partitions covering the topic", split, m1, m2); err != nil {
		return err
	}
	for _, m := range []*member{m1, m2} {
		fmt.Printf("member %s assigned %s\n", m.name, list(m.owned()))
	}
	if err := pause("balanced"); err != nil {
		return err
	}
	want, err := produceSpread(bootstrap, topic, partitions, "phase1", 200)
	if err != nil {
		return err
	}
	if err := wait("every phase1 record consumed", func() bool { return l.size() >= len(want) }, m1, m2); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	if err := l.check("two members", want); err != nil {
		return err
	}
	for _, m := range []*member{m1, m2} {
		m.mu.Lock()
		fmt.Printf("member %s consumed %d\n", m.name, m.consumed)
		m.mu.Unlock()
	}
	if err := m1.close(); err != nil {
		return err
	}
	if err := wait("go-m2 takes every partition", func() bool { return list(m2.owned()) == all }, m2); err != nil {
		return err
	}
	fmt.Printf("member go-m2 assigned %s\n", list(m2.owned()))
	if err := pause("takeover"); err != nil {
		return err
	}
	l.reset()
	want, err = produceSpread(bootstrap, topic, partitions, "phase2", 100)
	if err != nil {
		return err
	}
	if err := wait("every phase2 record consumed", func() bool { return l.size() >= len(want) }, m2); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	if err := l.check("survivor", want); err != nil {
		return err
	}
	if err := m2.close(); err != nil {
		return err
	}
	if err := pause("empty"); err != nil {
		return err
	}
	l.reset()
	want, err = produceSpread(bootstrap, topic, partitions, "phase3", 20)
	if err != nil {
		return err
	}
	m3, err := newMember(bootstrap, topic, groupID, protocol, "go-m3", l)
	if err != nil {
		return err
	}
	if err := wait("go-m3 reads the new records", func() bool { return l.size() >= len(want) }, m3); err != nil {
		return err
	}
	time.Sleep(time.Second)
	if err := l.check("resumed member", want); err != nil {
		return err
	}
	m3.mu.Lock()
	fmt.Printf("member go-m3 consumed %d\n", m3.consumed)
	m3.mu.Unlock()
	return m3.close()
}

func describeConsumerGroup(c context.Context, adm *kadm.Client, group string) error {
	ds, err := adm.DescribeConsumerGroups(c, group)
	if err != nil {
		return err
	}
	d := ds[group]
	if d.Err != nil {
		return d.Err
	}
	fmt.Printf("group %s state %s type consumer members %d\n", d.Group, d.State, len(d.Members))
	for _, m := range d.Members {
		ps := []int{}
		for _, parts := range m.Assignment {
			for p := range parts {
				ps = append(ps, int(p))
			}
		}
		sort.Ints(ps)
		fmt.Printf("member %s %s\n", m.ClientID, list(ps))
	}
	return nil
}

func kvs(a []string) map[string]string {
	out := map[string]string{}
	for _, s := range a {
		k, v, _ := strings.Cut(s, "=")
		out[k] = v
	}
	return out
}

func admin(name string, a []string) error {
	cl, err := kgo.NewClient(opts(a[0])...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	c, cancel := ctx()
	defer cancel()
	switch name {
	case "admin-create-topic":
		configs := map[string]*string{}
		for k, v := range kvs(a[3:]) {
			v := v
			configs[k] = &v
		}
		r, err := adm.CreateTopic(c, int32(atoi(a[2])), 1, configs, a[1])
		if err != nil {
			return err
		}
		if r.Err != nil {
			return r.Err
		}
		fmt.Printf("created %s\n", r.Topic)
	case "admin-list-topics":
		ts, err := adm.ListTopics(c)
		if err != nil {
			return err
		}
		if err := ts.Error(); err != nil {
			return err
		}
		for _, t := range ts.Sorted() {
			fmt.Printf("topic %s\n", t.Topic)
		}
	case "admin-describe-topic":
		ts, err := adm.ListTopics(c, a[1])
		if err != nil {
			return err
		}
		t := ts[a[1]]
		if t.Err != nil {
			return t.Err
		}
		fmt.Printf("topic %s id %s internal %v\n", t.Topic, t.ID, t.IsInternal)
		for _, p := range t.Partitions.Sorted() {
			if p.Err != nil {
				return p.Err
			}
			fmt.Printf("partition %d leader %d replicas %s isr %s\n", p.Partition, p.Leader, ids(p.Replicas), ids(p.ISR))
		}
	case "admin-create-partitions":
		rs, err := adm.UpdatePartitions(c, atoi(a[2]), a[1])
		if err != nil {
			return err
		}
		if err := rs.Error(); err != nil {
			return err
		}
		fmt.Printf("partitions %s %s\n", a[1], a[2])
	case "admin-delete-topic":
		r, err := adm.DeleteTopic(c, a[1])
		if err != nil {
			return err
		}
		if r.Err != nil {
			return r.Err
		}
		fmt.Printf("deleted %s\n", a[1])
	case "admin-describe-configs":
		var rcs kadm.ResourceConfigs
		if a[1] == "broker" {
			rcs, err = adm.DescribeBrokerConfigs(c, int32(atoi(a[2])))
		} else {
			rcs, err = adm.DescribeTopicConfigs(c, a[2])
		}
		if err != nil {
			return err
		}
		for _, rc := range rcs {
			if rc.Err != nil {
				return rc.Err
			}
			for _, cfg := range rc.Configs {
				fmt.Printf("config %s=%s %s\n", cfg.Key, cfg.MaybeValue(), cfg.Source)
			}
		}
	case "admin-alter-configs":
		alters := []kadm.AlterConfig{}
		for k, v := range kvs(a[3:]) {
			v := v
			if v == "" {
				alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
			} else {
				alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
			}
		}
		var rs kadm.AlterConfigsResponses
		if a[1] == "broker" {
			rs, err = adm.AlterBrokerConfigs(c, alters, int32(atoi(a[2])))
		} else {
			rs, err = adm.AlterTopicConfigs(c, alters, a[2])
		}
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Err != nil {
				return r.Err
			}
		}
		fmt.Println("altered")
	case "admin-list-offsets":
		topic, partitions := a[1], atoi(a[2])
		var lo kadm.ListedOffsets
		switch a[3] {
		case "earliest":
			lo, err = adm.ListStartOffsets(c, topic)
		case "latest":
			lo, err = adm.ListEndOffsets(c, topic)
		case "max-timestamp":
			lo, err = adm.ListMaxTimestampOffsets(c, topic)
		default:
			ms, _ := strconv.ParseInt(a[3], 10, 64)
			lo, err = adm.ListOffsetsAfterMilli(c, ms, topic)
		}
		if err != nil {
			return err
		}
		for p := 0; p < partitions; p++ {
			o, ok := lo.Lookup(topic, int32(p))
			if !ok {
				return fmt.Errorf("no offset for partition %d", p)
			}
			if o.Err != nil {
				return o.Err
			}
			fmt.Printf("offset %d %d %d\n", p, o.Offset, o.Timestamp)
		}
	case "admin-delete-records":
		os := kadm.Offsets{}
		os.Add(kadm.Offset{Topic: a[1], Partition: int32(atoi(a[2])), At: int64(atoi(a[3]))})
		rs, err := adm.DeleteRecords(c, os)
		if err != nil {
			return err
		}
		r, ok := rs.Lookup(a[1], int32(atoi(a[2])))
		if !ok {
			return fmt.Errorf("no answer for the partition")
		}
		if r.Err != nil {
			return r.Err
		}
		fmt.Printf("low-watermark %d %d\n", r.Partition, r.LowWatermark)
	case "admin-list-groups":
		gs, err := adm.ListGroups(c)
		if err != nil {
			return err
		}
		for _, g := range gs.Sorted() {
			fmt.Printf("group %s %s %s\n", g.Group, dash(g.ProtocolType), dash(g.State))
		}
	case "admin-describe-group":
		ds, err := adm.DescribeGroups(c, a[1])
		if err != nil {
			return err
		}
		d := ds[a[1]]
		if errors.Is(d.Err, kerr.GroupIDNotFound) {
			// A KIP-848 group: DescribeGroups serves classic groups only, as in Kafka.
			return describeConsumerGroup(c, adm, a[1])
		}
		if d.Err != nil {
			return d.Err
		}
		fmt.Printf("group %s state %s type %s members %d\n", d.Group, d.State, dash(d.ProtocolType), len(d.Members))
		for _, m := range d.Members {
			ps := []int{}
			if ca, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range ca.Topics {
					for _, p := range t.Partitions {
						ps = append(ps, int(p))
					}
				}
			}
			sort.Ints(ps)
			fmt.Printf("member %s %s\n", m.ClientID, list(ps))
		}
	case "admin-list-group-offsets":
		rs, err := adm.FetchOffsets(c, a[1])
		if err != nil {
			return err
		}
		if err := rs.Error(); err != nil {
			return err
		}
		for _, r := range rs.Sorted() {
			fmt.Printf("committed %s %d %d\n", r.Topic, r.Partition, r.At)
		}
	case "admin-alter-group-offsets":
		os := kadm.Offsets{}
		for k, v := range kvs(a[3:]) {
			os.Add(kadm.Offset{Topic: a[2], Partition: int32(atoi(k)), At: int64(atoi(v)), LeaderEpoch: -1})
		}
		if err := adm.CommitAllOffsets(c, a[1], os); err != nil {
			return err
		}
		fmt.Println("altered")
	case "admin-delete-group-offsets":
		ts := kadm.TopicsSet{}
		for _, p := range a[3:] {
			ts.Add(a[2], int32(atoi(p)))
		}
		rs, err := adm.DeleteOffsets(c, a[1], ts)
		if err != nil {
			return err
		}
		if err := rs.Error(); err != nil {
			return err
		}
		fmt.Println("deleted")
	case "admin-delete-group":
		r, err := adm.DeleteGroup(c, a[1])
		if err != nil {
			return err
		}
		if r.Err != nil {
			return r.Err
		}
		fmt.Printf("deleted %s\n", a[1])
	case "admin-describe-cluster":
		md, err := adm.BrokerMetadata(c)
		if err != nil {
			return err
		}
		fmt.Printf("cluster %s controller %d\n", md.Cluster, md.Controller)
		for _, b := range md.Brokers {
			fmt.Printf("node %d %s:%d\n", b.NodeID, b.Host, b.Port)
		}
	case "admin-describe-log-dirs":
		ds, err := adm.DescribeBrokerLogDirs(c, int32(atoi(a[1])), nil)
		if err != nil {
			return err
		}
		for dir, d := range ds {
			fmt.Printf("logdir %s error %v\n", dir, d.Err)
			if d.Err != nil {
				return d.Err
			}
			for t, ps := range d.Topics {
				for p, info := range ps {
					fmt.Printf("replica %s %d %d\n", t, p, info.Size)
				}
			}
		}
	case "admin-describe-producers":
		ts := kadm.TopicsSet{}
		ts.Add(a[1], int32(atoi(a[2])))
		ds, err := adm.DescribeProducers(c, ts)
		if err != nil {
			return err
		}
		n := 0
		for _, t := range ds {
			for _, p := range t.Partitions {
				if p.Err != nil {
					return p.Err
				}
				for _, ap := range p.ActiveProducers {
					fmt.Printf("producer %d %d %d\n", ap.ProducerID, ap.ProducerEpoch, ap.LastSequence)
					n++
				}
			}
		}
		fmt.Printf("producers %d\n", n)
	case "admin-elect-leaders":
		ts := kadm.TopicsSet{}
		ts.Add(a[1], int32(atoi(a[2])))
		rs, err := adm.ElectLeaders(c, kadm.ElectPreferredReplica, ts)
		if err != nil {
			return err
		}
		for t, ps := range rs {
			for p, r := range ps {
				if r.Err != nil {
					return r.Err
				}
				fmt.Printf("elected %s %d ok\n", t, p)
			}
		}
	case "admin-list-transactions":
		ts, err := adm.ListTransactions(c, nil, nil)
		if err != nil {
			return err
		}
		for _, t := range ts.Sorted() {
			fmt.Printf("transaction %s %s\n", t.TxnID, t.State)
		}
		fmt.Println("transactions listed")
	case "admin-describe-acls":
		b := kadm.NewACLs().AnyResource().ResourcePatternType(kadm.ACLPatternAny).
			Allow().Deny().AllowHosts().DenyHosts().Operations(kadm.OpAny)
		rs, err := adm.DescribeACLs(c, b)
		if err != nil {
			return err
		}
		n := 0
		for _, r := range rs {
			if r.Err != nil {
				return r.Err
			}
			n += len(r.Described)
		}
		fmt.Printf("acls %d\n", n)
	default:
		return fmt.Errorf("%s: %w", name, errUnsupported)
	}
	return nil
}

func ids(ns []int32) string {
	s := []string{}
	for _, n := range ns {
		s = append(s, strconv.Itoa(int(n)))
	}
	return strings.Join(s, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
